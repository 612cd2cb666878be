//! Telling packets apart on a shared port, before any peer sees them (sans-IO).
//!
//! Every peer of a core is reached at the core's port, so the first question for a
//! datagram is whose it is. A datagram from a known remote address belongs to that
//! address's peer. From an unknown address, only a STUN binding request can introduce a
//! peer: its USERNAME attribute is `<server ufrag>:<client ufrag>` (RFC 8445 §7.2.2), and
//! the server ufrag names the peer. Anything else from an unknown address is dropped and
//! counted. The classes follow RFC 7983's first-byte ranges.

/// What a datagram is, by its first byte (RFC 7983) and, for RTP/RTCP, its second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// STUN (0–3).
    Stun,
    /// DTLS (20–63).
    Dtls,
    /// RTP (128–191, payload type outside RTCP's 192–223 range).
    Rtp,
    /// RTCP (128–191, packet type 192–223).
    Rtcp,
    /// None of these.
    Unknown,
}

/// Classifies a datagram.
pub fn classify(b: &[u8]) -> PacketClass {
    match b.first() {
        Some(0..=3) => PacketClass::Stun,
        Some(20..=63) => PacketClass::Dtls,
        Some(128..=191) => match b.get(1) {
            Some(192..=223) => PacketClass::Rtcp,
            Some(_) if b.len() >= 12 => PacketClass::Rtp,
            _ => PacketClass::Unknown,
        },
        _ => PacketClass::Unknown,
    }
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;

/// The server-side ufrag of a STUN binding request (the part of USERNAME before ':'),
/// or `None` when the datagram is not a well-formed binding request with a USERNAME.
pub fn stun_server_ufrag(b: &[u8]) -> Option<&str> {
    if b.len() < 20 || b[4..8] != MAGIC_COOKIE {
        return None;
    }
    let msg_type = u16::from_be_bytes([b[0], b[1]]);
    if msg_type != BINDING_REQUEST {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if len % 4 != 0 || 20 + len > b.len() {
        return None;
    }
    let mut attrs = &b[20..20 + len];
    while attrs.len() >= 4 {
        let t = u16::from_be_bytes([attrs[0], attrs[1]]);
        let l = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let padded = l.div_ceil(4) * 4;
        if 4 + l > attrs.len() {
            return None;
        }
        if t == ATTR_USERNAME {
            let username = std::str::from_utf8(&attrs[4..4 + l]).ok()?;
            return username
                .split_once(':')
                .map(|(server, _)| server)
                .filter(|s| !s.is_empty());
        }
        if 4 + padded > attrs.len() {
            return None;
        }
        attrs = &attrs[4 + padded..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, to walk past.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        let u = username.as_bytes();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(u.len() as u16).to_be_bytes());
        attrs.extend_from_slice(u);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_the_server_ufrag() {
        let m = binding_request("srvfrag:clifrag");
        assert_eq!(classify(&m), PacketClass::Stun);
        assert_eq!(stun_server_ufrag(&m), Some("srvfrag"));
    }

    #[test]
    fn refuses_malformed_stun() {
        let good = binding_request("abc:def");
        // Truncated at every length.
        for n in 0..good.len() {
            let _ = stun_server_ufrag(&good[..n]);
        }
        let mut bad_cookie = good.clone();
        bad_cookie[5] = 0;
        assert_eq!(stun_server_ufrag(&bad_cookie), None);
        let mut long_len = good.clone();
        long_len[3] = 0xfc;
        assert_eq!(stun_server_ufrag(&long_len), None);
        assert_eq!(stun_server_ufrag(&binding_request("nocolon")), None);
        assert_eq!(stun_server_ufrag(&binding_request(":empty")), None);
        let mut response = good.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(stun_server_ufrag(&response), None);
    }

    #[test]
    fn classifies_by_first_bytes() {
        assert_eq!(classify(&[22, 254, 253]), PacketClass::Dtls);
        let mut rtp = vec![0x80, 96];
        rtp.resize(12, 0);
        assert_eq!(classify(&rtp), PacketClass::Rtp);
        assert_eq!(classify(&[0x80, 200, 0, 1]), PacketClass::Rtcp);
        assert_eq!(classify(&[0x80, 96]), PacketClass::Unknown);
        assert_eq!(classify(&[]), PacketClass::Unknown);
        assert_eq!(classify(b"GET / HTTP/1.1"), PacketClass::Unknown);
    }
}
