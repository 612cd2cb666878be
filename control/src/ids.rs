//! Identifiers in OWT's shape: 24 hex characters, sortable by creation time.

use std::time::{SystemTime, UNIX_EPOCH};

/// A new id: 4 bytes of seconds since the Unix epoch then 8 random bytes, as hex, like a
/// MongoDB ObjectId (which OWT's ids are), so apps that check the shape keep working.
pub fn new_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as u32;
    let rand: [u8; 8] = rand::random();
    format!("{}{}", hex::encode(secs.to_be_bytes()), hex::encode(rand))
}

/// A random secret of `n` bytes as URL-safe base64 without padding.
pub fn new_secret(n: usize) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_24_hex_and_distinct() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(super::new_secret(32).len(), 43);
    }
}
