//! Host names: a piece of [`PIECE`] bytes of a secret in any letter case.
//! DNS names are case-insensitive and go upstream in lower case, so a
//! mixed-case secret cut into labels would pass its exact forms while
//! losing only its letters' case.

use aho_corasick::AhoCorasick;

use super::fragments::PIECE;
use super::BuildError;
use crate::manifest::Secret;

/// Every `PIECE`-byte window of every secret of at least `PIECE` bytes,
/// searched case-insensitively.
#[derive(Clone, Debug)]
pub struct NameMatcher {
    ac: Option<AhoCorasick>,
    /// The secret each window belongs to.
    owners: Vec<String>,
}

impl NameMatcher {
    pub fn new(secrets: &[Secret]) -> Result<NameMatcher, BuildError> {
        let mut windows: Vec<&[u8]> = Vec::new();
        let mut owners = Vec::new();
        for s in secrets {
            for w in s.value.as_bytes().windows(PIECE) {
                windows.push(w);
                owners.push(s.name.clone());
            }
        }
        let ac = if windows.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&windows)?,
            )
        };
        Ok(NameMatcher { ac, owners })
    }

    /// The name of a secret a piece of which `hay` holds, in any case.
    pub fn find(&self, hay: &[u8]) -> Option<&str> {
        let m = self.ac.as_ref()?.find(hay)?;
        self.owners.get(m.pattern().as_usize()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_in_any_case_at_every_offset() {
        let value = "hs9Kq2Vx7Lm4Pw8Zr3Tn6Yb1Qd";
        let m = NameMatcher::new(&[Secret {
            name: "token".into(),
            value: value.into(),
        }])
        .unwrap();
        let lower = value.to_ascii_lowercase();
        for start in 0..=value.len() - PIECE {
            let piece = &lower[start..start + PIECE];
            let name = format!("a{piece}b.example.com");
            assert_eq!(m.find(name.as_bytes()), Some("token"), "{name}");
            let short = &piece[..PIECE - 1];
            assert_eq!(m.find(short.as_bytes()), None, "{short}");
        }
        let none = NameMatcher::new(&[]).unwrap();
        assert_eq!(none.find(b"anything"), None);
    }
}
