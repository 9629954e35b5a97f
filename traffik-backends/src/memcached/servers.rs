//! Which server a key lives on: rendezvous hashing of the key's hash tag,
//! stable across processes, with nothing allocated per decision.

use traffik_core::{Error, ErrorKind};

use super::client::Address;

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// Parses `memcached://host:port[,host:port…]` or `memcached+unix:///path`.
pub(super) fn addresses(url: &str) -> Result<Vec<Address>, Error> {
    let shown: String = url.chars().take(200).collect();
    if let Some(path) = url.strip_prefix("memcached+unix://") {
        if path.is_empty() {
            return Err(config(format!("{shown:?} names no socket path")));
        }
        return Ok(vec![Address::Unix(path.to_owned())]);
    }
    let hosts = url.strip_prefix("memcached://").ok_or_else(|| {
        config(format!(
            "{shown:?} is not a memcached:// or memcached+unix:// url"
        ))
    })?;
    hosts
        .trim_end_matches('/')
        .split(',')
        .map(|host| {
            let host = host.trim();
            let valid = host
                .rsplit_once(':')
                .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
            if valid {
                Ok(Address::Tcp(host.to_owned()))
            } else {
                let host: String = host.chars().take(100).collect();
                Err(config(format!("{host:?} in {shown:?} is not host:port")))
            }
        })
        .collect()
}

/// FNV-1a over `seed` then `tag`, then a final mix: the same in every
/// process, so every instance sends a key to the same server.
fn stable_hash(seed: u64, tag: &[u8]) -> u64 {
    let mut hash = seed;
    for byte in tag {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// The servers' hashing seeds, one per server, made once from their
/// addresses.
#[derive(Debug)]
pub(super) struct Servers {
    seeds: Vec<u64>,
}

impl Servers {
    pub(super) fn new(addresses: &[Address]) -> Servers {
        let seeds = addresses
            .iter()
            .map(|address| {
                let name = address.to_string();
                let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
                for byte in name.as_bytes().iter().chain(&[0xff]) {
                    seed ^= u64::from(*byte);
                    seed = seed.wrapping_mul(0x0000_0100_0000_01b3);
                }
                seed
            })
            .collect();
        Servers { seeds }
    }

    /// The server of a key: the highest score for the part of the key
    /// between braces (every key of one decision shares it).
    pub(super) fn of(&self, key: &str) -> usize {
        let tag = hash_tag(key).as_bytes();
        (0..self.seeds.len())
            .max_by_key(|&i| stable_hash(self.seeds[i], tag))
            .unwrap_or(0)
    }
}

/// What places a key, as in Redis Cluster: the text between the first `{`
/// and the next `}` when it is not empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    let Some((_, after)) = key.split_once('{') else {
        return key;
    };
    match after.split_once('}') {
        Some((tag, _)) if !tag.is_empty() => tag,
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_are_read_as_redis_reads_them() {
        assert_eq!(hash_tag("ns:api:{ip:1.2.3.4}|r:/x:gcra"), "ip:1.2.3.4");
        assert_eq!(hash_tag("{t:x}:fixed_window:123"), "t:x");
        assert_eq!(hash_tag("ns:api:{}x:gcra"), "ns:api:{}x:gcra");
        assert_eq!(hash_tag("ns:api:{open"), "ns:api:{open");
        assert_eq!(hash_tag("plain"), "plain");
    }

    #[test]
    fn urls() {
        assert_eq!(
            addresses("memcached://a:1,b:2").unwrap(),
            vec![Address::Tcp("a:1".into()), Address::Tcp("b:2".into())]
        );
        assert_eq!(
            addresses("memcached+unix:///tmp/mc.sock").unwrap(),
            vec![Address::Unix("/tmp/mc.sock".into())]
        );
        for bad in [
            "memcached://",
            "memcached://host",
            "memcached://h:x",
            "redis://h:1",
            "memcached+unix://",
        ] {
            assert_eq!(
                addresses(bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
        let long = format!("memcached://{}", "x".repeat(10_000));
        assert!(addresses(&long).unwrap_err().to_string().len() < 600);
    }

    #[test]
    fn keys_of_one_tag_share_a_server_and_tags_spread() {
        let servers = Servers::new(&addresses("memcached://a:1,b:2,c:3").unwrap());
        assert_eq!(
            servers.of("{t:x}:gcra"),
            servers.of("{t:x}:fixed_window:123")
        );
        let mut used = [0; 3];
        for n in 0..300 {
            used[servers.of(&format!("{{t:{n}}}:gcra"))] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }
}
