//! Start-up checks and resources: which CPUs, which addresses, which ports, enough
//! locked memory, and the media sockets. Every refusal says what to change.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use switchyard_config::{Config, Cores};

/// What stops the dataplane from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CPU choice does not fit this machine.
    #[error("dataplane.cores: {0}")]
    Cores(String),
    /// The port range is too small for the cores.
    #[error("webrtc.minport..webrtc.maxport ({min}..{max}) holds {ports} port(s) but the dataplane runs on {cores} core(s), one port each: widen the range or set dataplane.cores")]
    Ports {
        /// webrtc.minport
        min: u16,
        /// webrtc.maxport
        max: u16,
        /// Ports in the range.
        ports: usize,
        /// Cores configured.
        cores: usize,
    },
    /// The memlock limit is below what the executors need.
    #[error("the locked-memory limit is {have_kib} KiB but {executors} glommio executors need at least {need_kib} KiB: raise it (`ulimit -l {need_kib}` in the shell, or LimitMEMLOCK=infinity in the systemd unit)")]
    Memlock {
        /// The soft limit now.
        have_kib: u64,
        /// What is needed.
        need_kib: u64,
        /// Executors to start.
        executors: usize,
    },
    /// An interface named in the config does not exist or has no address.
    #[error("webrtc.network_interfaces[{index}].name: {problem}")]
    Interface {
        /// Its index in the list.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// A socket could not be made or bound.
    #[error("cannot bind the media socket {addr}: {source} (is another process using webrtc.minport..maxport?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// glommio refuses to start an executor with less than this much lockable memory.
pub const MEMLOCK_PER_EXECUTOR_KIB: u64 = 512;

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status).
pub fn allowed_cpus() -> Vec<usize> {
    let list = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| l["Cpus_allowed_list:".len()..].trim().to_string())
        });
    let parsed = list.as_deref().map(parse_cpu_list).unwrap_or_default();
    if parsed.is_empty() {
        (0..std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1))
            .collect()
    } else {
        parsed
    }
}

/// Parses "0-3,8,10-11".
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The CPUs the cores run on, one each.
pub fn resolve_cores(cores: &Cores, allowed: &[usize]) -> Result<Vec<usize>, SetupError> {
    match cores {
        Cores::All => Ok(allowed.to_vec()),
        Cores::Count(n) if *n <= allowed.len() => Ok(allowed[..*n].to_vec()),
        Cores::Count(n) => Err(SetupError::Cores(format!(
            "{n} cores asked for but this process may use only {} CPUs ({allowed:?})",
            allowed.len()
        ))),
        Cores::List(v) => {
            if let Some(bad) = v.iter().find(|c| !allowed.contains(c)) {
                return Err(SetupError::Cores(format!(
                    "CPU {bad} is not one this process may use ({allowed:?})"
                )));
            }
            Ok(v.clone())
        }
    }
}

/// Checks that the port range has a port for every core.
pub fn check_ports(config: &Config, cores: usize) -> Result<(), SetupError> {
    let ports = config.media_port_count();
    if ports < cores {
        return Err(SetupError::Ports {
            min: config.webrtc.minport.0,
            max: config.webrtc.maxport.0,
            ports,
            cores,
        });
    }
    Ok(())
}

/// The soft `RLIMIT_MEMLOCK` in KiB, from /proc/self/limits (`None`: unlimited or unknown).
pub fn memlock_kib() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()?;
    soft.parse::<u64>().ok().map(|bytes| bytes / 1024)
}

/// Checks that `executors` glommio executors can lock their memory.
pub fn check_memlock(executors: usize, have_kib: Option<u64>) -> Result<(), SetupError> {
    let need_kib = MEMLOCK_PER_EXECUTOR_KIB * executors as u64;
    match have_kib {
        Some(have_kib) if have_kib < need_kib => Err(SetupError::Memlock {
            have_kib,
            need_kib,
            executors,
        }),
        _ => Ok(()),
    }
}

/// The media addresses: (address to bind, address to announce). With no
/// `webrtc.network_interfaces`, every IPv4 address of every interface, loopback included.
pub fn media_addresses(config: &Config) -> Result<Vec<(IpAddr, IpAddr)>, SetupError> {
    let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
    let v4 = |name: Option<&str>| -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = ifaces
            .iter()
            .filter(|i| name.is_none_or(|n| i.name == n))
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if config.webrtc.network_interfaces.is_empty() {
        let all = v4(None);
        if all.is_empty() {
            return Ok(vec![(
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([127, 0, 0, 1]),
            )]);
        }
        return Ok(all.into_iter().map(|ip| (ip, ip)).collect());
    }
    let mut out = Vec::new();
    for (index, nic) in config.webrtc.network_interfaces.iter().enumerate() {
        let ips = v4(Some(&nic.name));
        if ips.is_empty() {
            let mut names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
            names.sort();
            names.dedup();
            return Err(SetupError::Interface {
                index,
                problem: format!(
                    "no interface {:?} with an IPv4 address (this machine has {names:?})",
                    nic.name
                ),
            });
        }
        let announce: Option<IpAddr> = nic
            .replaced_ip_address
            .as_deref()
            .and_then(|s| s.parse().ok());
        out.extend(ips.into_iter().map(|ip| (ip, announce.unwrap_or(ip))));
    }
    Ok(out)
}

/// A UDP socket bound to `addr`, with large kernel buffers.
pub fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> Result<Socket, SetupError> {
    let err = |source| SetupError::Bind { addr, source };
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    // Best effort: the kernel caps these at net.core.rmem_max/wmem_max.
    let _ = s.set_recv_buffer_size(buffer_bytes);
    let _ = s.set_send_buffer_size(buffer_bytes);
    s.bind(&addr.into()).map_err(err)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        let allowed = vec![0, 1, 2, 3];
        assert_eq!(resolve_cores(&Cores::All, &allowed).unwrap(), allowed);
        assert_eq!(
            resolve_cores(&Cores::Count(2), &allowed).unwrap(),
            vec![0, 1]
        );
        assert!(resolve_cores(&Cores::Count(5), &allowed)
            .unwrap_err()
            .to_string()
            .contains("dataplane.cores"));
        assert!(resolve_cores(&Cores::List(vec![7]), &allowed).is_err());
    }

    #[test]
    fn too_few_ports_is_explained() {
        let c = Config::from_toml_str("[webrtc]\nminport = 40000\nmaxport = 40001\n").unwrap();
        let e = check_ports(&c, 4).unwrap_err().to_string();
        assert!(
            e.contains("holds 2 port(s)") && e.contains("4 core(s)"),
            "{e}"
        );
        check_ports(&c, 2).unwrap();
    }

    #[test]
    fn memlock_is_explained() {
        let e = check_memlock(5, Some(1024)).unwrap_err().to_string();
        assert!(e.contains("2560 KiB") && e.contains("LimitMEMLOCK"), "{e}");
        check_memlock(5, None).unwrap();
        check_memlock(2, Some(1024)).unwrap();
        assert!(memlock_kib().is_none_or(|k| k > 0));
    }

    #[test]
    fn unknown_interface_is_explained() {
        let c = Config::from_toml_str("[webrtc]\nnetwork_interfaces = [{name = \"nosuchnic0\"}]\n")
            .unwrap();
        let e = media_addresses(&c).unwrap_err().to_string();
        assert!(
            e.contains("network_interfaces[0].name") && e.contains("nosuchnic0"),
            "{e}"
        );
        let all = media_addresses(&Config::default()).unwrap();
        assert!(all.iter().any(|(ip, _)| ip.is_loopback()));
    }
}
