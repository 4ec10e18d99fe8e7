//! A network namespace of a test's own, joined to the host by a veth pair, whose link can
//! be cut by dropping every packet (a `pfifo` queue of length 0 on both ends: every packet
//! is dropped as it is queued; no kernel module beyond the built-in FIFO): a server inside it goes
//! silent, neither refusing nor closing anything, as a host does when its network fails.
//! Needs root, `ip` and `tc` (iproute2). Everything it made is removed on drop.
//!
//! The addresses are in `10.213.0.0/16`, on the veth pair only: no traffic leaves the
//! machine.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace and its link to the host.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    ns_ip: String,
    host_ip: String,
}

impl Netns {
    /// Makes the namespace `fsm<pid><n>` and its link: the host side `10.213.X.1`, the
    /// namespace side `10.213.X.2` ([`Netns::address`]).
    ///
    /// # Errors
    /// What failed (not root, no iproute2), as text.
    pub fn create() -> Result<Netns, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = (std::process::id() % 10_000) * 10 + n % 10;
        let subnet = (std::process::id() + n) % 250 + 1;
        let netns = Netns {
            name: format!("fsm{tag}"),
            host_if: format!("fsmh{tag}"),
            ns_if: format!("fsmn{tag}"),
            ns_ip: format!("10.213.{subnet}.2"),
            host_ip: format!("10.213.{subnet}.1"),
        };
        let host_ip = format!("10.213.{subnet}.1/30");
        let ns_cidr = format!("{}/30", netns.ns_ip);
        let ns = netns.name.as_str();
        let steps: [&[&str]; 7] = [
            &["netns", "add", ns],
            &[
                "link",
                "add",
                &netns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &netns.ns_if,
            ],
            &["link", "set", &netns.ns_if, "netns", ns],
            &["addr", "add", &host_ip, "dev", &netns.host_if],
            &["link", "set", &netns.host_if, "up"],
            &["-n", ns, "addr", "add", &ns_cidr, "dev", &netns.ns_if],
            &["-n", ns, "link", "set", &netns.ns_if, "up"],
        ];
        for step in steps {
            run("ip", step)?;
        }
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace side's address: where a server inside listens.
    pub fn address(&self) -> &str {
        &self.ns_ip
    }

    /// The host side's address: where a server inside reaches the host (a server on the
    /// host that must be reached from inside listens there).
    pub fn host_address(&self) -> &str {
        &self.host_ip
    }

    /// The namespace's name (`ip netns exec NAME …`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program args…` run inside the namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }

    /// Drops every packet both ways from now on: connections stay open, nothing answers.
    ///
    /// # Errors
    /// What failed, as text.
    pub fn cut(&self) -> Result<(), String> {
        self.root_qdisc(&["add"], &["pfifo", "limit", "0"])
    }

    /// Lets packets through again.
    ///
    /// # Errors
    /// What failed, as text.
    pub fn restore(&self) -> Result<(), String> {
        self.root_qdisc(&["del"], &[])
    }

    /// `tc qdisc ACTION dev IF root KIND…` on both ends of the link: the host's, then the
    /// namespace's.
    fn root_qdisc(&self, action: &[&str], kind: &[&str]) -> Result<(), String> {
        for (interface, inside) in [(&self.host_if, false), (&self.ns_if, true)] {
            let mut args: Vec<&str> = Vec::new();
            if inside {
                args.extend(["netns", "exec", &self.name, "tc"]);
            }
            args.push("qdisc");
            args.extend(action);
            args.extend(["dev", interface.as_str(), "root"]);
            args.extend(kind);
            run(if inside { "ip" } else { "tc" }, &args)?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the host's.
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &self.host_if]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("{program}: {err}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
