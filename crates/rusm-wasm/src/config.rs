//! The `wasi:config` grant: `store.get` and `store.get-all` see only the keys of the
//! policy's `[config]` section, a host variable read when the guest asks.

use rusm_policy::ConfigPolicy;
use wasmtime::component::HasData;

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

use generated::wasi::config::store;

/// What the host side of `wasi:config` reaches of a process: its policy's `[config]`.
pub(crate) struct ConfigView<'a>(pub(crate) &'a ConfigPolicy);

/// The [`HasData`] of [`ConfigView`].
pub(crate) struct ConfigData;

impl HasData for ConfigData {
    type Data<'a> = ConfigView<'a>;
}

/// Add `wasi:config/store` to `linker`, reaching each process's view through `view`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> ConfigView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, ConfigData>(linker, view)
}

fn host_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl store::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.0.vars.get(&key).and_then(|v| v.resolve(host_env))))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self.0.resolve(host_env)))
    }
}
