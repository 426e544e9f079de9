//! The `rusm` command.

fn main() {
    eprintln!("rusm: no commands yet");
    std::process::exit(2);
}
