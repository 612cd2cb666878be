//! How to hand a core's fan-out to the kernel: CPU time per datagram for the ways the
//! dataplane could send, measured side by side in one run on this machine.
//!
//! The load is the SFU's: each input (one publisher packet) becomes `fanout` datagrams of
//! 1,200 bytes to as many different subscribers (UDP sockets on 127.0.0.1 that nobody
//! reads, so the kernel's delivery cost is included and identical for every method).
//!
//! - `sendto`: one system call per datagram (the dataplane before this benchmark).
//! - `sendmmsg`: one system call per batch of up to 64 datagrams (what the dataplane uses).
//! - `glommio`: glommio's io_uring `send_to`, every datagram of a batch submitted together
//!   (one `io_uring_enter` per batch, a copy into glommio's buffer per datagram).
//! - `gso`: for reference, the case UDP GSO is made for — the 8 packets of one video frame
//!   to *one* subscriber in one `sendmsg` with `UDP_SEGMENT`, against 8 `sendto`. Fan-out
//!   sends each packet to a different address, which GSO cannot merge.
//!
//! Then the receive side, a core's socket taking what its peers send: a thread floods one
//! socket (with `sendmmsg`) while the receiving thread's own CPU is measured per datagram
//! it takes, with `recv_from` (one system call per datagram), `recvmmsg` (up to 64 per
//! call, returning once one has arrived) and glommio's `recv_from` (io_uring, what the
//! dataplane uses).

use anyhow::Context;
use clap::Parser;
use nix::sys::socket::{
    recvmmsg, sendmmsg, sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags, MultiHeaders,
    SockaddrStorage,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "CPU per datagram of sendto, sendmmsg, glommio (io_uring) and UDP GSO")]
struct Args {
    /// Datagrams per method.
    #[arg(long, default_value_t = 400_000)]
    datagrams: usize,
    /// Subscribers each input goes to.
    #[arg(long, default_value_t = 200)]
    fanout: usize,
}

const BATCH: usize = 64;
const SIZE: usize = 1200;

fn cpu_now() -> f64 {
    switchyard_perf::cpu_seconds(&std::process::id().to_string()).unwrap_or(0.0)
}

/// Runs `send` until `total` datagrams are out; returns (µs of CPU, µs of wall) per datagram.
fn measure(total: usize, mut send: impl FnMut(usize) -> usize) -> (f64, f64) {
    let cpu0 = cpu_now();
    let t0 = Instant::now();
    let mut sent = 0;
    let mut i = 0;
    while sent < total {
        sent += send(i);
        i += 1;
    }
    let cpu = cpu_now() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    (cpu * 1e6 / sent as f64, wall * 1e6 / sent as f64)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sinks: Vec<UdpSocket> = (0..args.fanout)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("binding the receiving sockets")?;
    let dests: Vec<SocketAddr> = sinks
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    sender.set_nonblocking(true)?;
    let payload = vec![0x5au8; SIZE];
    println!(
        "udp-bench: {} datagrams of {SIZE} B per method, fan-out to {} sockets, {}",
        args.datagrams,
        args.fanout,
        switchyard_perf::cpu_model()
    );
    let mut rows = Vec::new();

    // One sendto per datagram.
    let r = measure(args.datagrams, |i| {
        let d = dests[i % dests.len()];
        let _ = sender.send_to(&payload, d);
        1
    });
    rows.push(("sendto (1 syscall per datagram)", r));

    // sendmmsg, 64 at a time: the fan-out of one input, in batches.
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let slices: Vec<[IoSlice; 1]> = (0..BATCH).map(|_| [IoSlice::new(&payload)]).collect();
    let cmsgs: [ControlMessage; 0] = [];
    let fd = sender.as_raw_fd();
    let mut next_dest = 0;
    let r = measure(args.datagrams, |_| {
        let addrs: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|k| {
            Some(SockaddrStorage::from(dests[(next_dest + k) % dests.len()]))
        });
        next_dest = (next_dest + BATCH) % dests.len();
        match sendmmsg(fd, &mut headers, &slices, addrs, cmsgs, MsgFlags::empty()) {
            Ok(res) => res.count().max(1),
            Err(_) => BATCH,
        }
    });
    rows.push(("sendmmsg (batches of 64)", r));

    // glommio's io_uring send_to, a batch of 64 submitted together.
    let total = args.datagrams;
    let dests_g = dests.clone();
    let payload_g = payload.clone();
    let r = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let sock = match glommio::net::UdpSocket::bind("127.0.0.1:0") {
                Ok(s) => s,
                Err(e) => return Err(anyhow::anyhow!("glommio bind: {e}")),
            };
            let cpu0 = cpu_now();
            let t0 = Instant::now();
            let mut sent = 0;
            let mut d = 0;
            while sent < total {
                let futs: Vec<_> = (0..BATCH)
                    .map(|k| sock.send_to(&payload_g, dests_g[(d + k) % dests_g.len()]))
                    .collect();
                d = (d + BATCH) % dests_g.len();
                for f in futs {
                    let _ = f.await;
                }
                sent += BATCH;
            }
            let cpu = cpu_now() - cpu0;
            Ok((
                cpu * 1e6 / sent as f64,
                t0.elapsed().as_secs_f64() * 1e6 / sent as f64,
            ))
        })
        .map_err(|e| anyhow::anyhow!("glommio executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("glommio executor: {e}"))??;
    rows.push(("glommio send_to (io_uring, 64 in flight)", r));

    // GSO: one frame of 8 packets to one subscriber.
    const FRAME: usize = 8;
    let frame = vec![0x5au8; SIZE * FRAME];
    let gso_size = SIZE as u16;
    let gso_cmsg = [ControlMessage::UdpGsoSegments(&gso_size)];
    let mut gso_ok = true;
    let r = measure(args.datagrams, |i| {
        let to = SockaddrStorage::from(dests[i % dests.len()]);
        let iov = [IoSlice::new(&frame)];
        if sendmsg(fd, &iov, &gso_cmsg, MsgFlags::empty(), Some(&to)).is_err() {
            gso_ok = false;
        }
        FRAME
    });
    rows.push(("UDP GSO (8 packets of one frame, 1 syscall)", r));
    let r = measure(args.datagrams, |i| {
        let d = dests[i % dests.len()];
        for _ in 0..FRAME {
            let _ = sender.send_to(&payload, d);
        }
        FRAME
    });
    rows.push(("sendto of the same frame (8 syscalls)", r));

    println!(
        "{:<46} {:>14} {:>14}",
        "method", "CPU µs/dgram", "wall µs/dgram"
    );
    for (name, (cpu, wall)) in &rows {
        println!("{name:<46} {cpu:>14.3} {wall:>14.3}");
    }
    if !gso_ok {
        println!("(UDP GSO was refused by this kernel or interface: its row is not valid)");
    }
    let base = rows[0].1 .0;
    println!(
        "sendmmsg against sendto: {:.2}×, glommio against sendto: {:.2}×",
        base / rows[1].1 .0,
        base / rows[2].1 .0
    );
    drop(sinks);
    receive(args.datagrams)
}

/// This thread's CPU seconds.
fn thread_cpu() -> f64 {
    switchyard_perf::cpu_seconds("thread-self").unwrap_or(0.0)
}

/// A socket flooded by another thread until the returned flag is set.
fn flooded() -> anyhow::Result<(UdpSocket, Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    // Room for bursts, as the dataplane asks for.
    let _ = setsockopt(&sock, sockopt::RcvBuf, &(8 << 20));
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    let to = sock.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_s = stop.clone();
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let handle = std::thread::spawn(move || {
        let payload = vec![0x5au8; SIZE];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let slices: Vec<[IoSlice; 1]> = (0..BATCH).map(|_| [IoSlice::new(&payload)]).collect();
        let cmsgs: [ControlMessage; 0] = [];
        let addrs: [Option<SockaddrStorage>; BATCH] =
            std::array::from_fn(|_| Some(SockaddrStorage::from(to)));
        while !stop_s.load(Ordering::Relaxed) {
            let _ = sendmmsg(
                sender.as_raw_fd(),
                &mut headers,
                &slices,
                addrs,
                cmsgs,
                MsgFlags::empty(),
            );
        }
    });
    Ok((sock, stop, handle))
}

/// Receives `total` datagrams with `take` (which answers how many it took, 0 on a timeout);
/// returns µs of this thread's CPU per datagram.
fn measure_receive(total: usize, mut take: impl FnMut(&UdpSocket) -> usize) -> anyhow::Result<f64> {
    let (sock, stop, handle) = flooded()?;
    let cpu0 = thread_cpu();
    let mut got = 0;
    while got < total {
        let n = take(&sock);
        if n == 0 {
            break;
        }
        got += n;
    }
    let cpu = thread_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    anyhow::ensure!(got > 0, "nothing was received");
    Ok(cpu * 1e6 / got as f64)
}

fn receive(total: usize) -> anyhow::Result<()> {
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let mut buf = vec![0u8; 1500];
    rows.push((
        "recv_from (1 syscall per datagram)",
        measure_receive(total, |s| usize::from(s.recv_from(&mut buf).is_ok()))?,
    ));
    let mut bufs = vec![[0u8; 1500]; BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    rows.push((
        "recvmmsg (up to 64 per call)",
        measure_receive(total, |s| {
            let iovs: Vec<[IoSliceMut; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match recvmmsg(
                s.as_raw_fd(),
                &mut headers,
                iovs.iter(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(r) => r.count(),
                Err(_) => 0,
            }
        })?,
    ));
    let (sock, stop, handle) = flooded()?;
    let glommio_us = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let sock = glommio::net::UdpSocket::from(socket2::Socket::from(sock));
            let mut buf = vec![0u8; 1500];
            let cpu0 = thread_cpu();
            let mut got = 0;
            while got < total {
                match sock.recv_from(&mut buf).await {
                    Ok(_) => got += 1,
                    Err(_) => break,
                }
            }
            (thread_cpu() - cpu0) * 1e6 / got.max(1) as f64
        })
        .map_err(|e| anyhow::anyhow!("glommio executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("glommio executor: {e}"))?;
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    rows.push(("glommio recv_from (io_uring, the dataplane)", glommio_us));
    println!("{:<46} {:>14}", "receiving", "CPU µs/dgram");
    for (name, cpu) in &rows {
        println!("{name:<46} {cpu:>14.3}");
    }
    println!(
        "recvmmsg against recv_from: {:.2}×, glommio against recv_from: {:.2}×",
        rows[0].1 / rows[1].1,
        rows[0].1 / rows[2].1
    );
    Ok(())
}
