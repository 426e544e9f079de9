//! `plugin-host`: runs the example application once over plugin files.
//!
//! ```text
//! plugin-host <plugin-greeter.wasm> <plugin-looper.wasm> [<plugin-greeter-v2.wasm>]
//! ```
//!
//! It starts both plugins, calls the greeter, lets the looper run into its deadline
//! while the greeter keeps answering, reloads the greeter when a second version is
//! given, and prints what the plugins logged.

use std::path::PathBuf;
use std::time::Duration;

use plugin_host::App;
use rusm::Interrupted;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [greeter, looper, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: plugin-host <plugin-greeter.wasm> <plugin-looper.wasm> [<plugin-greeter-v2.wasm>]"
        );
    };
    let app = App::new()?;
    app.load("greeter", greeter)?;
    app.load("looper", looper)?;
    let greeter = app.start("greeter", &[("greeting", "Hello")], None).await?;
    let looper = app.start("looper", &[], None).await?;
    println!("{} ({})", greeter.describe().await?, greeter.pid());
    println!("{}", greeter.greet("world").await?);
    println!("2 + 3 = {}", greeter.add(2, 3).await?);

    // The looper never returns from `run`: its deadline stops it, and it goes on
    // with a fresh instance; the greeter answers meanwhile.
    let stuck = looper.run("forever", Duration::from_millis(200), Interrupted::Keep);
    let (stuck, greeting) = tokio::join!(stuck, greeter.greet("again"));
    println!("looper: {}", stuck.expect_err("the looper never returns"));
    println!("{}", greeting?);
    println!("{}", looper.describe().await?);

    if let Some(v2) = rest.first() {
        let version = app.reload("greeter", v2).await?;
        println!(
            "reloaded greeter to version {version}: {}",
            greeter.describe().await?
        );
    }
    for line in app.log() {
        println!("log: {line}");
    }
    app.node().shutdown(Duration::from_secs(1)).await;
    Ok(())
}
