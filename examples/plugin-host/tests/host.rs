//! The plugin-host example end to end: the real plugin components (built by
//! `rusm-e2e`) driven through the example's own host.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use plugin_host::{App, PluginHandle};
use rusm::supervisor::{Strategy, SupervisorSpec, supervise};
use rusm::{Context, ExitReason, Interrupted, Message, Pid, PluginError, Policy};
use tokio::sync::oneshot;

// `components::PLUGIN_GREETER` and the rest; a plugin component no test here uses is a
// compile error.
rusm_e2e::components!(plugin_host);

/// An app with the greeter and the looper loaded.
fn app() -> App {
    let app = App::new().expect("the app's node builds");
    app.load("greeter", components::PLUGIN_GREETER.path())
        .expect("plugin-greeter loads");
    app.load("looper", components::PLUGIN_LOOPER.path())
        .expect("plugin-looper loads");
    app
}

async fn start(app: &App, name: &str) -> PluginHandle {
    app.start(name, &[], None)
        .await
        .unwrap_or_else(|e| panic!("{name} starts: {e}"))
}

fn policy(toml: &str) -> Policy {
    Policy::parse(toml, Path::new("test-policy.toml")).expect("the test policy parses")
}

/// A native process monitoring `pid`; resolves to the reason its monitor reports.
async fn monitor(app: &App, pid: Pid) -> oneshot::Receiver<ExitReason> {
    let (down_tx, down_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    app.node().runtime().spawn(move |ctx: Context| async move {
        ctx.monitor(pid);
        let _ = ready_tx.send(());
        loop {
            if let Message::Down(down) = ctx.recv().await {
                let _ = down_tx.send(down.reason);
                return;
            }
        }
    });
    ready_rx.await.expect("the monitor starts");
    down_rx
}

/// Waits until the looper has logged entering `run` `times` times in all.
async fn spinning(app: &App, times: usize) {
    app.log_until(|lines| {
        lines
            .iter()
            .filter(|l| *l == "looper: spinning on spin")
            .count()
            >= times
    })
    .await;
}

/// Bounds a test's waits so that a regression fails instead of hanging.
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 20 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_both_ways() {
    let app = app();
    let greeter = app
        .start("greeter", &[("greeting", "Howdy")], None)
        .await
        .expect("greeter starts");
    let plain = start(&app, "looper").await;
    assert_eq!(greeter.describe().await.unwrap(), "greeter 1");
    // Host -> plugin export, which calls plugin -> host imports (setting and log).
    assert_eq!(greeter.greet("Ann").await.unwrap(), "Howdy, Ann!");
    assert_eq!(greeter.add(40, 2).await.unwrap(), 42);
    assert_eq!(greeter.add(u32::MAX, 2).await.unwrap(), 1);
    assert_eq!(plain.greet("Bo").await.unwrap(), "looping, Bo");
    assert_eq!(app.log(), ["greeter: greeted Ann"]);
    // Each plugin has its own settings: a greeter without any uses its default.
    let other = start(&app, "greeter").await;
    assert_ne!(other.pid(), greeter.pid());
    assert_eq!(other.greet("Cy").await.unwrap(), "Hello, Cy!");
    assert_eq!(app.log(), ["greeter: greeted Ann", "greeter: greeted Cy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_the_looping_plugin_while_the_other_answers() {
    let app = app();
    let greeter = start(&app, "greeter").await;
    let looper = start(&app, "looper").await;
    let down = monitor(&app, looper.pid()).await;
    let stuck = {
        let looper = looper.clone();
        tokio::spawn(async move {
            looper
                .run("spin", Duration::from_millis(300), Interrupted::Kill)
                .await
        })
    };
    // The looper is inside its call (it logs before it spins)...
    bounded("the looper's start", spinning(&app, 1)).await;
    // ...and the greeter keeps answering while it spins.
    for i in 0..20 {
        assert_eq!(greeter.add(i, 1).await.unwrap(), i + 1);
    }
    assert!(
        !stuck.is_finished(),
        "the looping call returned while the greeter answered"
    );
    assert!(app.node().runtime().is_alive(looper.pid()));
    let err = bounded("the looping call", stuck)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::DeadlineExceeded { killed: true, pid, .. } if pid == looper.pid()),
        "{err}"
    );
    assert_eq!(
        bounded("the monitor", down).await.unwrap(),
        ExitReason::DeadlineExceeded
    );
    let after = looper.describe().await.unwrap_err();
    assert!(
        matches!(
            &after,
            PluginError::Ended {
                reason: ExitReason::DeadlineExceeded,
                ..
            }
        ),
        "{after}"
    );
    assert_eq!(greeter.greet("Di").await.unwrap(), "Hello, Di!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_plugin_goes_on_with_a_fresh_instance_under_the_same_pid() {
    let app = app();
    let looper = start(&app, "looper").await;
    let pid = looper.pid();
    let err = bounded(
        "the looping call",
        looper.run("spin", Duration::from_millis(100), Interrupted::Keep),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, PluginError::DeadlineExceeded { killed: false, .. }),
        "{err}"
    );
    assert_eq!(looper.pid(), pid);
    assert!(app.node().runtime().is_alive(pid));
    assert_eq!(looper.add(2, 2).await.unwrap(), 4);
    assert_eq!(looper.describe().await.unwrap(), "looper 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_kill_interrupt_a_call_in_flight() {
    let app = app();
    let looper = start(&app, "looper").await;
    let call = |looper: PluginHandle, interrupted| {
        tokio::spawn(async move {
            looper
                .run("spin", Duration::from_secs(60), interrupted)
                .await
        })
    };
    // Cancel, keeping the plugin: the call fails, the plugin answers again.
    let running = call(looper.clone(), Interrupted::Keep);
    bounded("the looper's start", spinning(&app, 1)).await;
    looper.plugin().cancel();
    let err = bounded("the cancelled call", running)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PluginError::Cancelled { killed: false, .. }),
        "{err}"
    );
    assert_eq!(looper.add(1, 1).await.unwrap(), 2);
    // A kill of the pid ends the call in flight and the plugin.
    let down = monitor(&app, looper.pid()).await;
    let running = call(looper.clone(), Interrupted::Keep);
    bounded("the looper's second start", spinning(&app, 2)).await;
    app.node().runtime().kill(looper.pid());
    let err = bounded("the killed call", running)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::Ended {
                reason: ExitReason::Killed,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        bounded("the monitor", down).await.unwrap(),
        ExitReason::Killed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_the_policy_does_not_grant_is_a_wasi_error_in_the_plugin() {
    let app = app();
    // The default policy grants no environment and no files.
    let greeter = start(&app, "greeter").await;
    let env = greeter
        .run("env:APP_TOKEN", Duration::from_secs(5), Interrupted::Kill)
        .await
        .unwrap();
    assert_eq!(
        env,
        Err("APP_TOKEN: environment variable not found".to_owned())
    );
    let file = greeter
        .run(
            "read:/etc/hostname",
            Duration::from_secs(5),
            Interrupted::Kill,
        )
        .await
        .unwrap();
    let err = file.unwrap_err();
    assert!(
        err.starts_with("NotFound")
            || err.starts_with("PermissionDenied")
            || err.starts_with("Unsupported"),
        "{err}"
    );
    // The plugin is still fine after being refused.
    assert_eq!(greeter.add(1, 2).await.unwrap(), 3);
    // Granted by another policy, the same variable is there.
    let granted = app
        .start(
            "greeter",
            &[],
            Some(policy("[env]\nvars = { APP_TOKEN = \"t0k3n\" }\n")),
        )
        .await
        .unwrap();
    let env = granted
        .run("env:APP_TOKEN", Duration::from_secs(5), Interrupted::Kill)
        .await
        .unwrap();
    assert_eq!(env, Ok("t0k3n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_calls_going_and_later_calls_see_the_new_version() {
    let app = app();
    let greeter = start(&app, "greeter").await;
    let pid = greeter.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let greeter = greeter.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Acquire) {
                answers.push(greeter.greet("Eve").await);
            }
            answers
        })
    };
    // Let some calls through on version 1 first.
    bounded(
        "calls on version 1",
        app.log_until(|lines| lines.len() >= 5),
    )
    .await;
    let version = bounded(
        "the reload",
        app.reload("greeter", components::PLUGIN_GREETER_V2.path()),
    )
    .await
    .expect("version 2 loads");
    assert_eq!(version, 2);
    let reloaded_at = app.log().len();
    bounded(
        "calls on version 2",
        app.log_until(|lines| lines.len() >= reloaded_at + 5),
    )
    .await;
    stop.store(true, Ordering::Release);
    let answers = bounded("the caller", caller).await.unwrap();
    let answers: Vec<String> = answers
        .into_iter()
        .map(|a| a.expect("no call fails across the reload"))
        .collect();
    // Every call was answered, first by version 1, then (never going back) by version 2.
    let first_v2 = answers
        .iter()
        .position(|a| a == "Hello, Eve! (v2)")
        .expect("later calls run on version 2");
    assert!(first_v2 > 0, "{answers:?}");
    assert!(
        answers[..first_v2].iter().all(|a| a == "Hello, Eve!"),
        "{answers:?}"
    );
    assert!(
        answers[first_v2..].iter().all(|a| a == "Hello, Eve! (v2)"),
        "{answers:?}"
    );
    assert_eq!(greeter.describe().await.unwrap(), "greeter 2");
    assert_eq!(greeter.pid(), pid, "the same process runs the new version");
    // A plugin started after the reload runs version 2 from the start.
    let fresh = start(&app, "greeter").await;
    assert_eq!(fresh.describe().await.unwrap(), "greeter 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_a_typed_error_for_the_host_and_an_exit_reason_for_monitors() {
    let app = app();
    let greeter = start(&app, "greeter").await;
    let bystander = start(&app, "greeter").await;
    let down = monitor(&app, greeter.pid()).await;
    let err = greeter
        .run("crash", Duration::from_secs(5), Interrupted::Kill)
        .await
        .unwrap_err();
    let PluginError::Crashed { reason, pid, .. } = &err else {
        panic!("expected a crash, got {err}");
    };
    assert_eq!(*pid, greeter.pid());
    let ExitReason::Crashed(why) = reason else {
        panic!("expected a crashed exit reason, got {reason}");
    };
    assert!(why.contains("unreachable"), "{why}");
    assert_eq!(bounded("the monitor", down).await.unwrap(), *reason);
    let after = greeter.add(1, 1).await.unwrap_err();
    assert!(matches!(after, PluginError::Ended { .. }), "{after}");
    assert_eq!(bystander.add(1, 1).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_restarts_a_crashed_plugin_and_gives_up_past_its_intensity() {
    let app = app();
    let (child, greeter) = app.supervised("greeter");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(2, Duration::from_secs(60))
        .child(child);
    let (supervisor, supervisor_exit) = app
        .node()
        .runtime()
        .spawn_watched(Default::default(), move |ctx| supervise(ctx, spec));
    let crash = async |plugin: &PluginHandle| {
        let err = plugin
            .run("crash", Duration::from_secs(5), Interrupted::Kill)
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::Crashed { .. }), "{err}");
    };

    let first = bounded("the first start", greeter.ready()).await.unwrap();
    assert_eq!(first.greet("Ann").await.unwrap(), "Hello, Ann!");
    crash(&first).await;
    // The supervisor starts a new process on a fresh instance; calls reach it.
    let second = bounded("the first restart", greeter.ready()).await.unwrap();
    assert_ne!(second.pid(), first.pid());
    assert!(app.node().runtime().is_alive(supervisor));
    assert_eq!(second.add(40, 2).await.unwrap(), 42);
    crash(&second).await;
    let third = bounded("the second restart", greeter.ready())
        .await
        .unwrap();
    assert!(![first.pid(), second.pid()].contains(&third.pid()));
    assert_eq!(third.greet("Bo").await.unwrap(), "Hello, Bo!");
    // A third crash within the period is past the intensity (2): the supervisor gives
    // up, and the handle says no instance will come.
    crash(&third).await;
    assert_eq!(
        bounded("the supervisor's exit", supervisor_exit).await,
        ExitReason::MaxRestartIntensity
    );
    let gone = bounded("the handle", greeter.ready()).await.unwrap_err();
    assert!(matches!(gone, PluginError::Ended { .. }), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_talks_to_other_processes_from_inside_a_call() {
    let app = app();
    let greeter = start(&app, "greeter").await;
    // A native process registered as `oracle` answers every pid it is sent.
    let oracle = app.node().runtime().spawn(|ctx: Context| async move {
        loop {
            if let Message::Data(data) = ctx.recv().await
                && let Some(bytes) = data.payload.as_bytes()
                && let Ok(raw) = <[u8; 8]>::try_from(bytes)
            {
                let to = Pid::from_raw(u64::from_le_bytes(raw));
                ctx.send(to, b"42 from the oracle".to_vec());
            }
        }
    });
    app.node().runtime().register("oracle", oracle).unwrap();
    let answer = greeter
        .run("ask:oracle", Duration::from_secs(10), Interrupted::Kill)
        .await
        .unwrap();
    assert_eq!(answer, Ok("42 from the oracle".to_owned()));
    let missing = greeter
        .run("ask:nobody", Duration::from_secs(10), Interrupted::Kill)
        .await
        .unwrap();
    assert_eq!(
        missing,
        Err("no process is registered as \"nobody\"".to_owned())
    );
}

#[tokio::test]
async fn plugins_and_actors_do_not_mix_and_imports_are_checked() {
    let app = app();
    // A plugin cannot be spawned as an actor.
    let err = app.node().spawn("greeter", Vec::new()).unwrap_err();
    assert_eq!(err, rusm::SpawnError::Plugin("greeter".to_owned()));
    // An actor cannot be started as a plugin.
    app.node()
        .load_file("echo", components::ECHO.path())
        .unwrap();
    let err = app.start("echo", &[], None).await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Spawn(rusm::SpawnError::NotPlugin(name)) if name == "echo"),
        "{err}"
    );
    // A node without the application's host interface cannot load its plugins.
    let bare = rusm::Node::builder().build().unwrap();
    let err = bare
        .load_plugin_file("greeter", components::PLUGIN_GREETER.path())
        .unwrap_err();
    assert!(
        matches!(err, rusm::LoadError::UnsatisfiedImport { .. })
            && err.to_string().contains("myapp:plugin/host"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_deadline_ends_a_plugin_as_it_ends_any_process() {
    let app = app();
    let looper = app
        .start(
            "looper",
            &[],
            Some(policy("[limits]\ndeadline = \"300ms\"\n")),
        )
        .await
        .expect("the looper starts");
    let down = monitor(&app, looper.pid()).await;
    // The call's own deadline is a minute: the policy's ends the plugin first.
    let err = bounded(
        "the looping call",
        looper.run("spin", Duration::from_secs(60), Interrupted::Keep),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::Ended {
                reason: ExitReason::DeadlineExceeded,
                pid,
                ..
            } if *pid == looper.pid()
        ),
        "{err}"
    );
    assert_eq!(
        bounded("the monitor", down).await.unwrap(),
        ExitReason::DeadlineExceeded
    );
}

/// A plugin called from inside a handler's call: an embedder's host function, imported
/// by a handler-style actor (`hook-handler`), starts and calls a plugin. Both stores
/// run on arena fiber stacks; each call must leave the other store's stack as it found
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_called_from_a_handlers_host_function_keeps_its_own_stack() {
    // No stack stays open between calls, so a stack recorded in the wrong store's
    // lease is closed as soon as that store's call ends.
    let arena = rusm::ArenaConfig {
        open_stacks: 0,
        ..rusm::ArenaConfig::default()
    };
    // The greeter, started lazily by the hook's first call.
    let greeter: Arc<tokio::sync::OnceCell<rusm::Plugin<plugin_host::Plugin>>> = Arc::default();
    let for_hook = greeter.clone();
    let started: Arc<std::sync::OnceLock<rusm::Node>> = Arc::default();
    let node_for_hook = started.clone();
    let node = rusm::Node::builder()
        .allocator(rusm::Allocator::Arena(arena))
        .link(move |linker| {
            plugin_host::Plugin::add_to_linker::<
                _,
                rusm::wasmtime::component::HasSelf<plugin_host::PluginHost>,
            >(linker, |state| {
                state.extension_mut::<plugin_host::PluginHost>()
            })?;
            // `rusm-test:nest/hook.call(n)`: the greeter's `add(n, 1000)`.
            linker.instance("rusm-test:nest/hook")?.func_wrap_async(
                "call",
                move |_store, (n,): (u64,)| {
                    let greeter = for_hook.clone();
                    let node = node_for_hook.clone();
                    Box::new(async move {
                        let plugin = greeter
                            .get_or_try_init(|| {
                                let node = node.get().expect("the node is built").clone();
                                async move {
                                    node.spawn_plugin(
                                        "greeter",
                                        rusm::PluginOptions::default(),
                                        |store, instance| plugin_host::Plugin::new(store, instance),
                                    )
                                    .await
                                }
                            })
                            .await?;
                        let n = u32::try_from(n)?;
                        let sum = plugin
                            .call(async |p, store| {
                                p.myapp_plugin_handler().call_add(store, n, 1000).await
                            })
                            .await?;
                        Ok((u64::from(sum),))
                    })
                },
            )
        })
        .build()
        .expect("the node builds");
    node.load_plugin_file("greeter", components::PLUGIN_GREETER.path())
        .expect("plugin-greeter loads");
    node.load_file("hooked", components::HOOK_HANDLER.path())
        .expect("hook-handler loads");
    assert!(started.set(node.clone()).is_ok());
    let hooked = node
        .spawn("hooked", Vec::new())
        .expect("the handler spawns");

    // The plugin starts (and so its store makes its fiber stack) inside the handler's
    // call.
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.runtime().spawn(move |ctx: Context| async move {
        let mut payload = ctx.pid().as_raw().to_le_bytes().to_vec();
        payload.push(0);
        ctx.send_tagged(hooked, 7, payload);
        let _ = tx.send(ctx.recv_tag(8).await);
    });
    let answer = bounded("the handler's answer", rx).await.unwrap();
    assert_eq!(answer.payload.as_bytes(), Some(&1007u64.to_le_bytes()[..]));

    // The handler's call has ended. The plugin's next call runs on its own stack,
    // which must still be usable: had the handler's lease taken it, it would have been
    // closed (made inaccessible) when the handler's call ended.
    let plugin = greeter.get().expect("the hook started the greeter");
    for n in 0..3 {
        let sum = bounded(
            "a direct call",
            plugin.call(async |p, store| p.myapp_plugin_handler().call_add(store, n, 1).await),
        )
        .await
        .expect("the plugin answers after the handler's call");
        assert_eq!(sum, n + 1);
    }
    let greeting = bounded(
        "a greeting",
        plugin.call(async |p, store| p.myapp_plugin_handler().call_greet(store, "ann").await),
    )
    .await
    .expect("the plugin greets");
    assert!(greeting.contains("ann"), "{greeting}");
}
