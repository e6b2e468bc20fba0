//! Just enough STUN (RFC 8489) to route a datagram: recognise a STUN message
//! and read its USERNAME attribute. str0m parses STUN fully afterwards.

/// STUN magic cookie (RFC 8489 §5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// USERNAME attribute type (RFC 8489 §14.3).
const ATTR_USERNAME: u16 = 0x0006;
/// STUN header length in bytes.
const HEADER_LEN: usize = 20;

/// Whether `buf` looks like a STUN message (first two bits zero, magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC_COOKIE
}

/// The local (server) ufrag of a binding request's USERNAME,
/// `"<server ufrag>:<client ufrag>"` (RFC 8445 §7.2.2). `None` for anything
/// else, malformed input included.
pub fn local_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let body = buf.get(HEADER_LEN..HEADER_LEN + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        // A PRIORITY attribute after USERNAME, to check skipping.
        let mut buf = vec![0x00, 0x01];
        buf.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        buf.extend_from_slice(&MAGIC_COOKIE);
        buf.extend_from_slice(&[7; 12]);
        buf.extend_from_slice(&attrs);
        buf
    }

    #[test]
    fn reads_server_ufrag() {
        let req = binding_request("srvUfrag:cli");
        assert!(is_stun(&req));
        assert_eq!(local_ufrag(&req), Some("srvUfrag"));
    }

    #[test]
    fn rejects_non_stun_and_truncated() {
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        assert_eq!(local_ufrag(&[]), None);
        let mut req = binding_request("abc:def");
        req.truncate(req.len() - 2);
        assert_eq!(local_ufrag(&req), None);
        let mut lying = binding_request("abc:def");
        lying[3] = 0xFF;
        assert_eq!(local_ufrag(&lying), None);
    }
}
