//! A pre-check of a pickle's opcode stream before it is decoded.
//!
//! `serde_pickle` decodes (and later drops) nested containers recursively, so a few
//! kilobytes of `]]]]…aaaa` would overflow the stack and abort the process. A value's
//! nesting depth can never exceed the number of containers it is built from (a nesting path
//! visits distinct containers; cycles are refused by the decoder), so counting the opcodes
//! that create a container bounds the depth. A CIFAR-10 batch uses a few dozen; anything
//! over [`MAX_CONTAINERS`] is refused before decoding. The walk knows every opcode of
//! protocols 0–5 and their argument lengths, so bytes inside strings are never mistaken
//! for opcodes; an unknown opcode means the file is not a pickle.

/// Containers (lists, tuples, dicts, sets, objects) a data-only pickle may create.
pub const MAX_CONTAINERS: usize = 256;

/// Count the container-creating opcodes, or say why the stream is not a usable pickle.
pub fn count_containers(bytes: &[u8]) -> Result<usize, String> {
    let mut pos = 0usize;
    let mut containers = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<usize, String> {
        let start = *pos;
        let end = start.checked_add(n).filter(|e| *e <= bytes.len()).ok_or("truncated pickle")?;
        *pos = end;
        Ok(start)
    };
    let uint = |pos: &mut usize, n: usize| -> Result<u64, String> {
        let start = take(pos, n)?;
        let mut v = 0u64;
        for (i, b) in bytes[start..start + n].iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        Ok(v)
    };
    let line = |pos: &mut usize| -> Result<(), String> {
        let rest = &bytes[*pos..];
        let nl = rest.iter().position(|b| *b == b'\n').ok_or("truncated pickle (missing end of line)")?;
        *pos += nl + 1;
        Ok(())
    };
    while pos < bytes.len() {
        let op = bytes[pos];
        pos += 1;
        match op {
            b'.' => return Ok(containers), // STOP
            // No argument.
            b'(' | b'0' | b'1' | b'2' | b'N' | b'a' | b'e' | b's' | b'u' | 0x88 | 0x89 | 0x94 | 0x97 | 0x98 | b'Q'
            | 0x93 => {}
            // Create a container or an object.
            b']' | b'}' | b')' | b'l' | b'd' | b't' | 0x85 | 0x86 | 0x87 | 0x8f | 0x91 | b'R' | b'b' | b'o' | 0x81
            | 0x92 => {
                containers += 1;
                if containers > MAX_CONTAINERS {
                    return Err(format!(
                        "the pickle builds more than {MAX_CONTAINERS} containers (lists, dicts, objects); \
                         a CIFAR-10 batch needs a few dozen, and deeper nesting could exhaust the stack"
                    ));
                }
            }
            0x90 => {} // ADDITEMS
            // One line of text.
            b'I' | b'L' | b'F' | b'S' | b'V' | b'P' | b'g' | b'p' => line(&mut pos)?,
            // Two lines (module and name).
            b'c' => {
                line(&mut pos)?;
                line(&mut pos)?;
            }
            b'i' => {
                containers += 1;
                line(&mut pos)?;
                line(&mut pos)?;
            }
            // Fixed-size arguments.
            b'K' | b'h' | b'q' | 0x80 | 0x82 => {
                take(&mut pos, 1)?;
            }
            b'M' | 0x83 => {
                take(&mut pos, 2)?;
            }
            b'J' | b'j' | b'r' | 0x84 => {
                take(&mut pos, 4)?;
            }
            b'G' | 0x95 => {
                take(&mut pos, 8)?;
            }
            // Length-prefixed data.
            b'U' | b'C' | 0x8c | 0x8a => {
                let n = uint(&mut pos, 1)?;
                take(&mut pos, n as usize)?;
            }
            b'T' | b'X' | b'B' | 0x8b => {
                let n = uint(&mut pos, 4)?;
                take(&mut pos, usize::try_from(n).map_err(|_| "truncated pickle")?)?;
            }
            0x8d | 0x8e | 0x96 => {
                let n = uint(&mut pos, 8)?;
                take(&mut pos, usize::try_from(n).map_err(|_| "truncated pickle")?)?;
            }
            other => return Err(format!("unknown pickle opcode 0x{other:02x} at byte {}", pos - 1)),
        }
    }
    Err("truncated pickle (no STOP opcode)".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_containers_and_skips_string_payloads() {
        // protocol 2: {'a': [1, 2]} with a string that contains ']' bytes.
        let mut p =
            vec![0x80, 2, b'}', b'q', 0, b'X', 3, 0, 0, 0, b']', b']', b']', b']', b'K', 1, b'K', 2, b'e', b's', b'.'];
        assert_eq!(count_containers(&p).unwrap(), 2);
        p.pop();
        assert!(count_containers(&p).unwrap_err().contains("no STOP"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', 20_000));
        p.extend(std::iter::repeat_n(b'a', 19_999));
        p.push(b'.');
        assert!(count_containers(&p).unwrap_err().contains("more than 256 containers"));
    }
}
