//! `exit-code`: a plain WASI command that ends through `wasi:cli/exit`'s
//! `exit-with-code` (WASI 0.2.12), which carries the exit code itself.
//!
//! Prints `exit-code: exiting with N` on stdout, then calls `exit-with-code(N)`,
//! where `N` is its first argument (an integer from 0 to 255), or 3 without one; any
//! other first argument is `N = 2`. (Rust's `std::process::exit` goes through
//! wasi-libc, which calls the older `exit` and so tells only success from failure.)

wit_bindgen::generate!({
    inline: "
        package rusm-test:exit-code;
        world exit-code {
            import wasi:cli/exit@0.2.12;
        }
    ",
    path: "../../wit/rusm-runtime",
    // The WASI packages there need it to parse, as in rusm-guest.
    features: ["clocks-timezone"],
    generate_all,
});

fn main() {
    let code = match std::env::args().nth(1) {
        None => 3,
        Some(arg) => arg.parse::<u8>().unwrap_or(2),
    };
    println!("exit-code: exiting with {code}");
    wasi::cli::exit::exit_with_code(code);
}
