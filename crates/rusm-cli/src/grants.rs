//! Grants for one run, given on the command line of `rusm run COMPONENT.wasm` and
//! `rusm serve` on top of the policy, spelled as `wasmtime run` spells them.
//!
//! Each flag is written as the policy text it adds, parsed as a policy of its own (so
//! it is checked exactly as a policy file is) and merged into the loaded policy before
//! the run. No flag, no grant: the policy alone still decides.

use anyhow::bail;
use rusm_policy::Policy;

/// The grant flags.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct GrantArgs {
    /// Preopen the host directory HOST read-write under the guest name GUEST (a path,
    /// absolute or relative: `.`, `readonly`, `/data`); without it the guest name is
    /// HOST as written (`--dir .` is the guest's `.`), as `wasmtime run --dir` does.
    /// Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Set the variable NAME to VALUE; without a value, pass rusm's own NAME through
    /// (left out when rusm has none), as `wasmtime run --env` does. Repeatable.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Let the guest open, bind and send on any TCP or UDP socket and resolve host
    /// names (wasmtime's `-S inherit-network -S allow-ip-name-lookup`).
    #[arg(long)]
    pub inherit_network: bool,
    /// Let the guest read the wall clock (the time of day).
    #[arg(long)]
    pub wall_clock: bool,
    /// Let the guest read the monotonic clock (elapsed time).
    #[arg(long)]
    pub monotonic_clock: bool,
    /// wasmtime's WASI options, as `wasmtime run -S` takes them (`KEY[=y|n]`,
    /// comma-separated or repeated): `inherit-network` (every socket, as
    /// `--inherit-network` without name lookups), `allow-ip-name-lookup`
    /// (`[net] dns`), `inherit-env` (every variable of rusm's own); `cli`,
    /// `cli-exit-with-code`, `tcp`, `udp`, `http`, `preview2` and
    /// `network-error-code` name interfaces rusm always links, and grant nothing.
    #[arg(short = 'S', long = "wasi", value_name = "KEY[=VAL][,...]")]
    pub wasi: Vec<String>,
    /// Print each grant these flags add, as the policy lines it adds.
    #[arg(short, long)]
    pub verbose: bool,
}

/// The `-S` keys rusm takes that grant nothing: interfaces it always links (what
/// they may reach is the policy's to say).
const ALWAYS_LINKED: [&str; 7] = [
    "cli",
    "cli-exit-with-code",
    "tcp",
    "udp",
    "http",
    "preview2",
    "network-error-code",
];

/// One `-S` option: its key and whether it is on.
fn wasi_option(option: &str) -> anyhow::Result<(&str, bool)> {
    let (key, value) = match option.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (option, None),
    };
    let on = match value {
        None | Some("y" | "yes" | "true") => true,
        Some("n" | "no" | "false") => false,
        Some(other) => {
            bail!("-S {option}: expected {key}, {key}=y or {key}=n, got the value {other:?}")
        }
    };
    Ok((key, on))
}

/// One flag and the policy text it stands for.
struct Grant {
    flag: String,
    toml: String,
}

impl GrantArgs {
    /// Add the grants to `policy`, printing each with `-v`. Relative host
    /// directories are resolved against the current directory.
    ///
    /// # Errors
    /// A malformed flag, a grant the policy format refuses (a guest path with `..`,
    /// a bad variable name), or a guest path the policy already preopens; the error
    /// names the flag.
    pub fn apply(&self, policy: &mut Policy) -> anyhow::Result<()> {
        let cwd = std::env::current_dir()
            .map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?;
        for grant in self.grants()? {
            let origin = cwd.join("command-line");
            let added = Policy::parse(&grant.toml, &origin).map_err(|e| match e {
                rusm_policy::PolicyError::Invalid { message, .. } => {
                    anyhow::anyhow!("{}: {message}", grant.flag)
                }
                other => anyhow::anyhow!("{}: {other}", grant.flag),
            })?;
            merge(policy, added, &grant.flag)?;
            if self.verbose {
                note!(
                    "rusm: {} grants: {}",
                    grant.flag,
                    grant.toml.trim_end().replace('\n', " ")
                );
            }
        }
        Ok(())
    }

    fn grants(&self) -> anyhow::Result<Vec<Grant>> {
        let mut grants = Vec::new();
        // Every socket use on every address, as wasmtime's `-S inherit-network`.
        let sockets = {
            let any = "[\"0.0.0.0/0:*\", \"[::/0]:*\"]";
            format!(
                "[net]\ntcp_connect = {any}\ntcp_bind = {any}\nudp_bind = {any}\nudp_connect = {any}\n"
            )
        };
        for option in self.wasi.iter().flat_map(|o| o.split(',')) {
            let (key, on) = wasi_option(option)?;
            let flag = format!("-S {option}");
            match key {
                _ if !on => {}
                "inherit-network" => grants.push(Grant {
                    flag,
                    toml: sockets.clone(),
                }),
                "allow-ip-name-lookup" => grants.push(Grant {
                    flag,
                    toml: "[net]\ndns = true\n".to_owned(),
                }),
                "inherit-env" => {
                    let mut names: Vec<String> = std::env::vars_os()
                        .filter_map(|(name, _)| name.into_string().ok())
                        .filter(|name| is_var_name(name))
                        .collect();
                    names.sort();
                    let list: Vec<String> = names.iter().map(|n| quote(n)).collect();
                    grants.push(Grant {
                        flag,
                        toml: format!("[env]\ninherit = [{}]\n", list.join(", ")),
                    });
                }
                key if ALWAYS_LINKED.contains(&key) => {}
                key => bail!(
                    "-S {option}: rusm does not take the WASI option {key:?}; it takes inherit-network, allow-ip-name-lookup, inherit-env and (granting nothing, as rusm always links them) {}",
                    ALWAYS_LINKED.join(", ")
                ),
            }
        }
        for dir in &self.dirs {
            let (host, guest) = match dir.split_once("::") {
                Some((host, guest)) => (host.to_owned(), guest.to_owned()),
                None if dir.split('/').any(|part| part == "..") => bail!(
                    "--dir {dir}: the guest would see it as {dir:?}, and guest names cannot contain \"..\"; name it with --dir {dir}::GUEST"
                ),
                None => (dir.clone(), dir.clone()),
            };
            if host.is_empty() || guest.is_empty() {
                bail!("--dir {dir}: expected HOST or HOST::GUEST");
            }
            grants.push(Grant {
                flag: format!("--dir {dir}"),
                toml: format!(
                    "[[fs.preopen]]\nhost = {}\nguest = {}\nmode = \"rw\"\n",
                    quote(&host),
                    quote(&guest)
                ),
            });
        }
        for var in &self.env {
            let toml = match var.split_once('=') {
                Some((name, value)) => {
                    format!("[env]\nvars = {{ {} = {} }}\n", quote(name), quote(value))
                }
                None => format!("[env]\ninherit = [{}]\n", quote(var)),
            };
            grants.push(Grant {
                flag: format!("--env {var}"),
                toml,
            });
        }
        if self.inherit_network {
            grants.push(Grant {
                flag: "--inherit-network".to_owned(),
                toml: format!("{sockets}dns = true\n"),
            });
        }
        for (on, flag, key) in [
            (self.wall_clock, "--wall-clock", "wall"),
            (self.monotonic_clock, "--monotonic-clock", "monotonic"),
        ] {
            if on {
                grants.push(Grant {
                    flag: flag.to_owned(),
                    toml: format!("[clocks]\n{key} = true\n"),
                });
            }
        }
        Ok(grants)
    }
}

/// Whether a variable name is one a policy takes (ASCII letters, digits and `_`, not
/// starting with a digit); `-S inherit-env` passes on only those.
fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A TOML basic string holding `text`.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Add what `added` grants to `policy`.
fn merge(policy: &mut Policy, added: Policy, flag: &str) -> anyhow::Result<()> {
    for preopen in added.fs.preopens {
        if policy.fs.preopens.iter().any(|p| p.guest == preopen.guest) {
            bail!(
                "{flag}: the policy already preopens a directory at {}",
                preopen.guest
            );
        }
        policy.fs.preopens.push(preopen);
    }
    for (name, value) in added.env.vars {
        policy.env.inherit.retain(|n| *n != name);
        policy.env.vars.insert(name, value);
    }
    for name in added.env.inherit {
        policy.env.vars.remove(&name);
        if !policy.env.inherit.contains(&name) {
            policy.env.inherit.push(name);
        }
    }
    let (net, more) = (&mut policy.net, added.net);
    net.tcp_connect.extend(more.tcp_connect);
    net.tcp_bind.extend(more.tcp_bind);
    net.udp_bind.extend(more.udp_bind);
    net.udp_connect.extend(more.udp_connect);
    net.dns |= more.dns;
    policy.clocks.wall |= added.clocks.wall;
    policy.clocks.monotonic |= added.clocks.monotonic;
    Ok(())
}
