//! A plugin called from inside a handler's call: an embedder's host function, imported
//! by a handler-style actor, calls a plugin. Both stores run on arena fiber stacks;
//! each call must leave the other store's stack as it found it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use std::time::Duration;
use tokio::sync::OnceCell;

use plugin_host::{Plugin, PluginHost};
use rusm::wasmtime::component::HasSelf;
use rusm::{Allocator, ArenaConfig, Context, Node, PluginOptions};
use rusm_e2e::{HOOK_HANDLER, PLUGIN_GREETER};

/// Bounds a test's waits so that a regression fails instead of hanging.
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 20 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_called_from_a_handlers_host_function_keeps_its_own_stack() {
    // No stack stays open between calls, so a stack recorded in the wrong store's
    // lease is closed as soon as that store's call ends.
    let arena = ArenaConfig {
        open_stacks: 0,
        ..ArenaConfig::default()
    };
    // The greeter, started lazily by the hook's first call.
    let greeter: Arc<OnceCell<rusm::Plugin<Plugin>>> = Arc::default();
    let for_hook = greeter.clone();
    let started: Arc<OnceLock<Node>> = Arc::default();
    let node_for_hook = started.clone();
    let node = Node::builder()
        .allocator(Allocator::Arena(arena))
        .link(move |linker| {
            Plugin::add_to_linker::<_, HasSelf<PluginHost>>(linker, |state| {
                state.extension_mut::<PluginHost>()
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
                                        PluginOptions::default(),
                                        |store, instance| Plugin::new(store, instance),
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
    node.load_plugin_file("greeter", Path::new(PLUGIN_GREETER))
        .expect("plugin-greeter loads");
    node.load_file("hooked", Path::new(HOOK_HANDLER))
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
