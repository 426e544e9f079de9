//! The `plugin-call` scenario: the round-trip cost of a typed host -> plugin call.
//!
//! The `plugin-looper` component (a plugin of the `examples/plugin-host` application,
//! WIT package `myapp:plugin`) is loaded as a plugin and started once; a run makes `n`
//! calls of its export `add(u32, u32) -> u32` one after another on a warm instance,
//! through [`rusm_wasm::Plugin::call`] with the typed bindings `bindgen!` generates
//! (each call takes the plugin's lock, checks its version, and runs under the
//! interruption watch, with no deadline). Every answer is checked.
//!
//! The baseline, in the same run, makes the same calls through bare wasmtime: the same
//! engine (the node's own, so the same configuration), the same component, an
//! `InstancePre` instantiated once into a store with WASI and the same host imports,
//! and `TypedFunc::call_async` on the `add` export (wasmtime 48 needs no
//! `post_return_async` any more: it is a deprecated no-op). One unit is one call.
//! Target: rusm's rate is at least 1/1.2 of the baseline's (a call costs at most 1.2x).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use rusm_otp::Runtime;
use rusm_wasm::{Plugin as RusmPlugin, PluginOptions, ProcessState, WasmConfig, WasmNode};
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker, ResourceTable, TypedFunc};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::harness::{Contender, interleaved};
use crate::native::Params;
use crate::report::{Figure, Sample, Side};

wasmtime::component::bindgen!({
    path: "../../examples/plugin-host/wit",
    world: "plugin",
    exports: { default: async },
});

/// The host side of `myapp:plugin/host` for the benchmark (the looper never calls it).
#[derive(Default)]
struct BenchHost;

impl myapp::plugin::host::Host for BenchHost {
    fn log(&mut self, _message: String) {}

    fn setting(&mut self, _key: String) -> Option<String> {
        None
    }
}

/// The store data of the bare-wasmtime side.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
    host: BenchHost,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The bare side's warm instance.
struct BareSide {
    store: Store<Bare>,
    add: TypedFunc<(u32, u32), (u32,)>,
}

/// `plugin-call`: `n` typed calls of `add` per run, rusm vs bare wasmtime.
pub async fn plugin_call(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    ensure!(n > 0, "plugin-call: n must be at least 1");
    let bytes = std::fs::read(crate::wasm::component_path("plugin-looper")?)?;
    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        ..WasmConfig::default()
    };
    let node = WasmNode::with_linker(Runtime::new(), config, |linker| {
        Plugin::add_to_linker::<_, HasSelf<BenchHost>>(linker, |state: &mut ProcessState| {
            state.extension_mut::<BenchHost>()
        })
    })?;
    node.load_plugin_bytes("looper", &bytes)
        .context("loading plugin-looper as a plugin")?;
    let plugin: RusmPlugin<Plugin> = node
        .spawn_plugin("looper", PluginOptions::default(), |store, instance| {
            Plugin::new(store, instance)
        })
        .await?;
    let bare = Arc::new(tokio::sync::Mutex::new(bare_side(&node, &bytes).await?));

    let sides = vec![
        Contender::new("rusm plugin call", move || {
            let plugin = plugin.clone();
            async move {
                let start = Instant::now();
                for i in 0..n {
                    let a = i as u32;
                    let sum = plugin
                        .call(async |p, store| p.myapp_plugin_handler().call_add(store, a, 1).await)
                        .await?;
                    ensure!(sum == a.wrapping_add(1), "add({a}, 1) answered {sum}");
                }
                Ok(Sample {
                    units: n,
                    elapsed: start.elapsed(),
                    latencies: Vec::new(),
                })
            }
        }),
        Contender::new("bare wasmtime call", move || {
            let bare = bare.clone();
            async move {
                let mut bare = bare.lock().await;
                let BareSide { store, add } = &mut *bare;
                let start = Instant::now();
                for i in 0..n {
                    let a = i as u32;
                    let (sum,) = add.call_async(&mut *store, (a, 1)).await?;
                    ensure!(sum == a.wrapping_add(1), "add({a}, 1) answered {sum}");
                }
                Ok(Sample {
                    units: n,
                    elapsed: start.elapsed(),
                    latencies: Vec::new(),
                })
            }
        }),
    ];
    let series = interleaved(p.repeats, p.rusm_only, sides).await?;
    let figure = Figure::new(
        "plugin-call",
        "typed add(u32,u32) call",
        "calls",
        format!("n={n}"),
        Side::new("rusm", &series[0], None),
        Side::new("bare wasmtime", &series[1], None),
        Some(1.0 / 1.2),
    );
    let rusm_ns = 1e9 / series[0].median();
    let bare_ns = 1e9 / series[1].median();
    Ok(vec![figure.with_note(format!(
        "{rusm_ns:.0} ns vs {bare_ns:.0} ns per call (medians); target: at most 1.2x bare wasmtime's cost"
    ))])
}

/// The bare-wasmtime side: the node's engine, the same component, an instance made
/// from an `InstancePre`, and the typed `add` export.
async fn bare_side(node: &WasmNode, bytes: &[u8]) -> Result<BareSide> {
    let engine = node.engine();
    let component = wasmtime::component::Component::new(engine, bytes)?;
    let mut linker: Linker<Bare> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Plugin::add_to_linker::<_, HasSelf<BenchHost>>(&mut linker, |state: &mut Bare| {
        &mut state.host
    })?;
    // Anything else it imports (rusm:runtime, unused by `add`) traps if called.
    linker.define_unknown_imports_as_traps(&component)?;
    let pre = linker.instantiate_pre(&component)?;
    let data = Bare {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        host: BenchHost,
    };
    let mut store = Store::new(engine, data);
    // The engine interrupts at every epoch tick, as rusm's stores do: yield and go on.
    store.epoch_deadline_async_yield_and_update(1);
    let instance = pre.instantiate_async(&mut store).await?;
    let handler = instance
        .get_export_index(&mut store, None, "myapp:plugin/handler")
        .context("plugin-looper exports no myapp:plugin/handler")?;
    let add = instance
        .get_export_index(&mut store, Some(&handler), "add")
        .context("plugin-looper's handler has no add")?;
    let add = instance.get_typed_func::<(u32, u32), (u32,)>(&mut store, &add)?;
    Ok(BareSide { store, add })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{runtime, small};

    #[test]
    fn a_small_plugin_call_run_checks_every_answer_on_both_sides() {
        let rt = runtime();
        let figures = rt.block_on(plugin_call(small(200, 0))).unwrap();
        assert_eq!(figures.len(), 1);
        assert!(figures[0].rusm.rate > 0.0 && figures[0].baseline.rate > 0.0);
        assert!(figures[0].target.is_some());
    }
}
