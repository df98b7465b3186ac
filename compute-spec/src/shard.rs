//! Shard indexes: a shard's number and the tenant's shard count, as the spec's shard map keys
//! them and a tenant-shard id ends (`<tenant>-<number><count>`).

/// A shard's index: its number and the shard count (0 unsharded). In the shard map and in a
/// tenant-shard id it is written `<number><count>`, two hex digits each (`0000`, `0204`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardIndex {
    /// The shard's number, below `count` (0 unsharded).
    pub number: u8,
    /// How many shards the tenant has (0 unsharded).
    pub count: u8,
}

impl ShardIndex {
    /// Reads a shard map key: exactly 4 hex digits; `None` otherwise.
    pub fn parse(key: &str) -> Option<Self> {
        if key.len() != 4 || !key.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            number: u8::from_str_radix(key.get(..2)?, 16).ok()?,
            count: u8::from_str_radix(key.get(2..)?, 16).ok()?,
        })
    }
}

impl std::fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}{:02x}", self.number, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_indexes_read_and_write_as_the_map_keys_them() {
        let index = ShardIndex::parse("0A10").unwrap();
        assert_eq!((index.number, index.count), (10, 16));
        assert_eq!(index.to_string(), "0a10");
        for bad in ["", "000", "00000", "+001", "0x01", "zz00", "00é"] {
            assert_eq!(ShardIndex::parse(bad), None, "{bad}");
        }
        let info: crate::spec::PageserverConnectionInfo =
            serde_json::from_str(r#"{"shard_count": 2}"#).unwrap();
        assert_eq!(info.shard_keys(), ["0002", "0102"]);
        let unsharded: crate::spec::PageserverConnectionInfo = serde_json::from_str("{}").unwrap();
        assert_eq!(unsharded.shard_keys(), ["0000"]);
    }
}
