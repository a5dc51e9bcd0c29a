//! The simulated history's keyset cursor: standard base64 of `{created_ms}:{seq}`, opaque to
//! clients like Kapso's own (base64 of a `(created_at, id)` keyset). A keyset, unlike an
//! offset, neither repeats nor skips items when messages are stored while a client pages.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The cursor of the item stored at `created_ms` with sequence number `seq`.
pub(crate) fn encode(created_ms: i128, seq: usize) -> String {
    let bytes = format!("{created_ms}:{seq}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `(created_ms, seq)` of a cursor, or `None` when it is not one of ours.
pub(crate) fn decode(cursor: &str) -> Option<(i128, usize)> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in cursor.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)?;
        bits = (bits << 6) | u32::try_from(value).ok()?;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push(u8::try_from((bits >> count) & 0xff).ok()?);
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    let (created, seq) = text.split_once(':')?;
    Some((created.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_look_like_base64() {
        for (ms, seq) in [(0, 0), (1_764_093_600_123, 7), (1_700_000_000_000, 123_456)] {
            let cursor = encode(ms, seq);
            assert!(cursor.bytes().all(|b| ALPHABET.contains(&b) || b == b'='));
            assert_eq!(decode(&cursor), Some((ms, seq)));
        }
        assert_eq!(encode(1, 2), "MToy");
        assert_eq!(decode("sim-3"), None);
        assert_eq!(decode("!!"), None);
    }
}
