//! Binding the shared UDP port: a socket that receives (registered with the
//! reactor) and, on the same address, a socket that only sends (in no
//! reactor).
//!
//! Why two: when a datagram a socket sent is freed (`sock_wfree`: on
//! loopback right after delivery, on a NIC at transmit completion), the
//! kernel offers the socket's waiters a wakeup. A socket registered with
//! epoll always has a waiter, epoll's entry, so each datagram of the fan-out
//! cost a locked walk of the wait queue into epoll's callback, which then
//! ignored it (we do not ask for `EPOLLOUT`): about 2 % of the server's CPU
//! in the audio-200 benchmark. A socket nobody waits on skips all of that.
//!
//! Both sockets join one `SO_REUSEPORT` group, and a classic BPF program on
//! the group (`SO_ATTACH_REUSEPORT_CBPF`, socket(7)) picks index 0, the
//! receiving socket (the first to join), for every incoming datagram.
//! Without it the kernel spreads datagrams over the group by a hash of
//! their addresses, and those given to the sending socket would never be
//! read. When any step is refused, one socket does both, as before.
//!
//! A port that is in use is still refused, even by another ferrokit: the
//! port is first bound once without `SO_REUSEPORT` and let go, so a second
//! server on the same port fails to start rather than join the first one's
//! group and never receive.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel receive and send buffer asked for on the shared port, bytes. The
/// kernel caps it at `net.core.rmem_max` / `wmem_max` (4 MiB on our test
/// machines, 208 KiB on a stock kernel). With the default 208 KiB, a
/// receive loop held up for ~100 ms in a 200-subscriber room overflowed it
/// (`RcvbufErrors`), and a lost publisher packet is lost for every
/// subscriber.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// The shared port's sockets, both non-blocking and bound to one address.
#[derive(Debug)]
pub struct PortSockets {
    /// Gets every datagram sent to the port.
    pub recv: UdpSocket,
    /// Sends from the port, and never receives; None when the kernel
    /// refused the pair (then `recv` sends too).
    pub send: Option<UdpSocket>,
}

/// Binds `addr` (port 0: one the kernel picks) with
/// [`SOCKET_BUFFER_BYTES`] buffers (best effort: a smaller cap is not an
/// error). Fails if the port is in use or the receiving socket cannot be
/// bound.
pub fn bind(addr: SocketAddr) -> io::Result<PortSockets> {
    // The plain bind that refuses a port in use (module docs); it also
    // turns port 0 into the port both sockets take.
    let addr = UdpSocket::bind(addr)?.local_addr()?;
    let recv = new_socket(addr)?;
    if let Err(e) = recv.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("udp: receive buffer of {SOCKET_BUFFER_BYTES} bytes refused: {e}");
    }
    if let Err(e) = recv.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("udp: send buffer of {SOCKET_BUFFER_BYTES} bytes refused: {e}");
    }
    // Asked for before binding, as the group requires; refused only by
    // kernels without SO_REUSEPORT, where one socket does both.
    let paired = recv.set_reuse_port(true).is_ok();
    recv.bind(&addr.into())?;
    let recv: UdpSocket = recv.into();
    let send = if paired {
        match recv
            .local_addr()
            .and_then(|local| send_socket(&recv, local))
        {
            Ok(send) => Some(send),
            Err(e) => {
                tracing::warn!("udp: no separate sending socket ({e}); one socket does both");
                None
            }
        }
    } else {
        None
    };
    Ok(PortSockets { recv, send })
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Steers the group of `recv` to it, then binds a sending socket to
/// `local`, `recv`'s own address.
fn send_socket(recv: &UdpSocket, local: SocketAddr) -> io::Result<UdpSocket> {
    steer_to_first(recv)?;
    let send = new_socket(local)?;
    if let Err(e) = send.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("udp: send buffer of {SOCKET_BUFFER_BYTES} bytes refused: {e}");
    }
    send.set_reuse_port(true)?;
    send.bind(&local.into())?;
    Ok(send.into())
}

/// Attaches to `socket`'s `SO_REUSEPORT` group a one-instruction classic
/// BPF program, `ret #0`: every datagram goes to the group's first socket.
#[allow(unsafe_code)]
fn steer_to_first(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, both alive for the call; the
    // kernel copies the program and keeps no pointer to either. The length
    // passed is `fprog`'s size, and the fd is `socket`'s, open while
    // borrowed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every datagram reaches the receiving socket whatever its source
    /// (the kernel's own choice hashes the source address and port), and
    /// the sending socket sends from the port.
    #[test]
    fn the_receiving_socket_gets_every_datagram_and_the_sender_sends_from_the_port() {
        let port = bind("127.0.0.1:0".parse().expect("address")).expect("bind the port");
        let send = port.send.as_ref().expect("a sending socket on Linux");
        let local = port.recv.local_addr().expect("port address");
        assert_eq!(send.local_addr().expect("sender address"), local);
        let clients: Vec<UdpSocket> = (0..32)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a client"))
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8], local).expect("send to the port");
        }
        // Loopback delivers within the send call: everything is queued now.
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while let Ok((n, _)) = port.recv.recv_from(&mut buf) {
            assert_eq!(n, 1);
            got.push(buf[0]);
        }
        got.sort_unstable();
        assert_eq!(
            got,
            (0..32).collect::<Vec<u8>>(),
            "all at the receiving socket"
        );
        assert!(
            send.recv_from(&mut buf).is_err(),
            "none at the sending socket"
        );

        clients[0]
            .set_nonblocking(true)
            .expect("non-blocking client");
        send.send_to(b"x", clients[0].local_addr().expect("client address"))
            .expect("send from the port");
        let (n, from) = clients[0].recv_from(&mut buf).expect("delivered");
        assert_eq!((n, from), (1, local), "sent from the port's address");
    }

    #[test]
    fn a_port_in_use_is_refused_even_by_another_pair() {
        let first = bind("127.0.0.1:0".parse().expect("address")).expect("bind the port");
        let local = first.recv.local_addr().expect("port address");
        let err = bind(local).expect_err("a second pair on the same port");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let plain = UdpSocket::bind("127.0.0.1:0").expect("bind a plain socket");
        let err =
            bind(plain.local_addr().expect("address")).expect_err("a port a plain socket holds");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
