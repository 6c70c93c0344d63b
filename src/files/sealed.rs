//! Streaming encryption of file contents: AES-256-GCM in chunks under a data key of the file's own, so a
//! file of any size is sealed and opened a chunk at a time, and any byte range opens without reading the
//! rest.
//!
//! Object layout (see `docs/storage.md`): an 8-byte header, `CBF1` and the chunk size (`u32`, big endian),
//! then the chunks. Chunk `i` holds plaintext bytes `[i * chunk, (i + 1) * chunk)` sealed with nonce
//! `0u32 ‖ i as u64` (big endian; the data key is used for one file only, so counters never repeat) and
//! associated data `i as u64 ‖ final`, where `final` is 1 for the last chunk only: chunks cannot be
//! reordered, dropped or the file cut short without the opening failing. An empty file is one empty final
//! chunk.

use std::ops::RangeInclusive;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use bytes::{Bytes, BytesMut};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const MAGIC: &[u8; 4] = b"CBF1";
/// Bytes before the first chunk.
pub const HEADER: usize = 8;

/// A sealed chunk or header that does not open: wrong key, altered or truncated object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stored file does not open with its key (altered, truncated or another key)")]
pub struct Unsealable;

/// A file's data key.
pub struct DataKey(Aes256Gcm);

impl DataKey {
    /// A fresh random key, and its bytes (to be wrapped by the keyring).
    pub fn generate() -> (Self, [u8; 32]) {
        let bytes: [u8; 32] = rand::random();
        (Self::from_bytes(&bytes), bytes)
    }

    /// The key of `bytes`.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(bytes.into()))
    }

    fn seal(&self, index: u64, last: bool, buf: &mut BytesMut) -> Result<(), Unsealable> {
        let tag = self
            .0
            .encrypt_in_place_detached(&nonce(index), &aad(index, last), buf.as_mut())
            .map_err(|_| Unsealable)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    fn open(&self, index: u64, last: bool, sealed: &[u8]) -> Result<BytesMut, Unsealable> {
        let split = sealed.len().checked_sub(TAG).ok_or(Unsealable)?;
        let mut buf = BytesMut::from(&sealed[..split]);
        self.0
            .decrypt_in_place_detached(
                &nonce(index),
                &aad(index, last),
                buf.as_mut(),
                Tag::from_slice(&sealed[split..]),
            )
            .map_err(|_| Unsealable)?;
        Ok(buf)
    }
}

fn nonce(index: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&index.to_be_bytes());
    *Nonce::from_slice(&bytes)
}

fn aad(index: u64, last: bool) -> [u8; 9] {
    let mut bytes = [0u8; 9];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    bytes[8] = u8::from(last);
    bytes
}

/// The object header.
pub fn header() -> Bytes {
    let mut bytes = BytesMut::with_capacity(HEADER);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&u32::try_from(CHUNK).unwrap_or(u32::MAX).to_be_bytes());
    bytes.freeze()
}

/// Seals a file as its bytes arrive: [`push`](Self::push) returns the chunks completed so far (a full
/// chunk is held back until more bytes show it is not the last), [`finish`](Self::finish) the last one.
pub struct Sealer {
    key: DataKey,
    index: u64,
    pending: BytesMut,
}

impl Sealer {
    /// A sealer with `key`; the header ([`header`]) goes before its chunks.
    pub fn new(key: DataKey) -> Self {
        Self {
            key,
            index: 0,
            pending: BytesMut::with_capacity(CHUNK + TAG),
        }
    }

    /// Takes more plaintext; returns the sealed chunks it completes.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<Bytes>, Unsealable> {
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.pending.len() == CHUNK {
                out.push(self.seal_pending(false)?);
            }
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(out)
    }

    /// Seals the last chunk.
    pub fn finish(mut self) -> Result<Bytes, Unsealable> {
        self.seal_pending(true)
    }

    fn seal_pending(&mut self, last: bool) -> Result<Bytes, Unsealable> {
        let mut buf = std::mem::replace(&mut self.pending, BytesMut::with_capacity(CHUNK + TAG));
        self.key.seal(self.index, last, &mut buf)?;
        self.index += 1;
        Ok(buf.freeze())
    }
}

/// Number of chunks of a file of `size` plaintext bytes.
fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64).max(1)
}

/// What to read from the object for the plaintext bytes `range` of a file of `size` bytes, and how to
/// open it ([`Opener`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Object bytes to fetch (end exclusive).
    pub fetch: std::ops::Range<u64>,
    first: u64,
    last_chunk: u64,
    skip: usize,
    remaining: u64,
}

impl Plan {
    /// The plan for the plaintext bytes `range` (inclusive, within the file) of a file of `size` bytes; the
    /// whole file when `range` is `None`.
    pub fn new(size: u64, range: Option<RangeInclusive<u64>>) -> Self {
        let chunk = CHUNK as u64;
        let sealed = chunk + TAG as u64;
        let (start, len) = match range {
            Some(r) => (*r.start(), r.end() - r.start() + 1),
            None => (0, size),
        };
        if len == 0 {
            // Nothing to read (an empty file): the plan fetches nothing and yields nothing.
            let at = HEADER as u64;
            return Self {
                fetch: at..at,
                first: 0,
                last_chunk: 0,
                skip: 0,
                remaining: 0,
            };
        }
        let first = start / chunk;
        let last = (start + len - 1) / chunk;
        let last_chunk = chunks(size) - 1;
        let end_of_last = if last == last_chunk {
            size - last * chunk + TAG as u64
        } else {
            sealed
        };
        Self {
            fetch: HEADER as u64 + first * sealed..HEADER as u64 + last * sealed + end_of_last,
            first,
            last_chunk,
            skip: usize::try_from(start - first * chunk).unwrap_or(0),
            remaining: len,
        }
    }

    /// The plaintext length the plan yields.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// True when the plan yields nothing.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

/// Opens the object bytes of a [`Plan`] as they arrive: [`push`](Self::push) returns the plaintext they
/// complete, [`finish`](Self::finish) checks nothing is missing.
pub struct Opener {
    key: DataKey,
    plan: Plan,
    index: u64,
    pending: BytesMut,
}

impl Opener {
    /// An opener for the bytes `plan.fetch` of the object.
    pub fn new(key: DataKey, plan: Plan) -> Self {
        Self {
            key,
            index: plan.first,
            pending: BytesMut::new(),
            plan,
        }
    }

    /// Takes more object bytes; returns the plaintext they complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>, Unsealable> {
        self.pending.extend_from_slice(data);
        let sealed = CHUNK + TAG;
        let mut out = Vec::new();
        while self.plan.remaining > 0 && self.pending.len() >= sealed {
            let chunk = self.pending.split_to(sealed);
            if let Some(plain) = self.open(&chunk)? {
                out.push(plain);
            }
        }
        Ok(out)
    }

    /// The plaintext of the last chunk; an error when the object ended early or holds more.
    pub fn finish(mut self) -> Result<Option<Bytes>, Unsealable> {
        if self.plan.remaining == 0 {
            return if self.pending.is_empty() {
                Ok(None)
            } else {
                Err(Unsealable)
            };
        }
        let chunk = std::mem::take(&mut self.pending);
        let plain = self.open(&chunk)?;
        if self.plan.remaining == 0 {
            Ok(plain)
        } else {
            Err(Unsealable)
        }
    }

    fn open(&mut self, sealed: &[u8]) -> Result<Option<Bytes>, Unsealable> {
        if self.index > self.plan.last_chunk {
            return Err(Unsealable);
        }
        let mut plain = self
            .key
            .open(self.index, self.index == self.plan.last_chunk, sealed)?;
        self.index += 1;
        let skip = std::mem::take(&mut self.plan.skip).min(plain.len());
        let _ = plain.split_to(skip);
        let keep = usize::try_from(self.plan.remaining)
            .unwrap_or(usize::MAX)
            .min(plain.len());
        plain.truncate(keep);
        self.plan.remaining -= keep as u64;
        Ok((!plain.is_empty()).then(|| plain.freeze()))
    }
}

/// Checks an object header.
pub fn check_header(bytes: &[u8]) -> Result<(), Unsealable> {
    if bytes.len() == HEADER && &bytes[..4] == MAGIC && bytes[4..] == header()[4..] {
        Ok(())
    } else {
        Err(Unsealable)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seal_all(bytes: &[u8], key: &[u8; 32], pieces: usize) -> Vec<u8> {
        let mut sealer = Sealer::new(DataKey::from_bytes(key));
        let mut out = header().to_vec();
        for piece in bytes.chunks(pieces.max(1)) {
            for c in sealer.push(piece).unwrap() {
                out.extend_from_slice(&c);
            }
        }
        out.extend_from_slice(&sealer.finish().unwrap());
        out
    }

    fn open_range(
        object: &[u8],
        key: &[u8; 32],
        size: u64,
        range: Option<RangeInclusive<u64>>,
        pieces: usize,
    ) -> Result<Vec<u8>, Unsealable> {
        check_header(&object[..HEADER])?;
        let plan = Plan::new(size, range);
        let fetched =
            &object[plan.fetch.start as usize..(plan.fetch.end as usize).min(object.len())];
        let mut opener = Opener::new(DataKey::from_bytes(key), plan);
        let mut out = Vec::new();
        for piece in fetched.chunks(pieces.max(1)) {
            for c in opener.push(piece)? {
                out.extend_from_slice(&c);
            }
        }
        if let Some(c) = opener.finish()? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_range_of_any_file_opens_to_its_plaintext(
            len in prop_oneof![0usize..100, CHUNK - 2..CHUNK + 2, 2 * CHUNK - 1..3 * CHUNK + 5],
            a in any::<u64>(), b in any::<u64>(), pieces in 1usize..100_000,
        ) {
            let key: [u8; 32] = rand::random();
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let object = seal_all(&plain, &key, pieces);
            prop_assert_eq!(object.len(), HEADER + len + chunks(len as u64) as usize * TAG);
            let whole = open_range(&object, &key, len as u64, None, pieces).unwrap();
            prop_assert_eq!(&whole, &plain);
            if len > 0 {
                let (x, y) = ((a % len as u64), (b % len as u64));
                let range = x.min(y)..=x.max(y);
                let part = open_range(&object, &key, len as u64, Some(range.clone()), pieces).unwrap();
                prop_assert_eq!(&part[..], &plain[*range.start() as usize..=*range.end() as usize]);
            }
        }
    }

    #[test]
    fn altered_truncated_or_rekeyed_objects_do_not_open() {
        let key: [u8; 32] = rand::random();
        let plain = vec![7u8; 2 * CHUNK + 10];
        let object = seal_all(&plain, &key, 4096);
        let size = plain.len() as u64;
        let mut altered = object.clone();
        altered[HEADER + CHUNK + 3] ^= 1;
        assert!(open_range(&altered, &key, size, None, 4096).is_err());
        // The file cut after its second chunk: the second chunk is not marked last.
        let cut = &object[..HEADER + 2 * (CHUNK + TAG)];
        assert!(open_range(cut, &key, 2 * CHUNK as u64, None, 4096).is_err());
        assert!(open_range(&object, &rand::random(), size, None, 4096).is_err());
        // Chunks swapped.
        let mut swapped = object.clone();
        let (a, b) = (HEADER, HEADER + CHUNK + TAG);
        let first: Vec<u8> = swapped[a..b].to_vec();
        let second: Vec<u8> = swapped[b..b + CHUNK + TAG].to_vec();
        swapped[a..b].copy_from_slice(&second);
        swapped[b..b + CHUNK + TAG].copy_from_slice(&first);
        assert!(open_range(&swapped, &key, size, None, 4096).is_err());
        assert!(check_header(b"CBF0\0\x01\0\0").is_err());
    }

    #[test]
    fn the_object_is_not_the_plaintext() {
        let key: [u8; 32] = rand::random();
        let plain = b"a recognisable plaintext line, repeated. ".repeat(100);
        let object = seal_all(&plain, &key, 1000);
        assert!(!object.windows(20).any(|w| plain.starts_with(w)));
    }
}
