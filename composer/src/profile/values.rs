//! Checks of single values. Each returns the parsed value or the message to show at the value.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::MacAddr;

pub(crate) fn ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an IPv4 address (like 10.0.0.10)"))
}

/// An IPv4 network in canonical form: no host bits set.
pub(crate) fn cidr(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("`{text}` is not an IPv4 CIDR (like 10.1.0.0/16)"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set; the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

pub(crate) fn mac(text: &str) -> Result<MacAddr, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not a MAC address (six hex pairs like 52:54:00:12:34:56)")
    })
}

/// Why an address cannot be a node's private address, if it cannot.
pub(crate) fn unusable_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let first = ip.octets()[0];
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if first == 0 {
        Some("in 0.0.0.0/8 (\"this network\")")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if first >= 240 {
        Some("in the reserved range 240.0.0.0/4")
    } else {
        None
    }
}

/// A DNS label as hostnames and etcd member names need it.
pub(crate) fn dns_label(text: &str) -> Result<(), String> {
    let problem = if text.is_empty() {
        Some("it is empty")
    } else if text.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("use only lowercase letters, digits and `-`")
    } else if text.starts_with('-') || text.ends_with('-') {
        Some("it must not start or end with `-`")
    } else {
        None
    };
    match problem {
        Some(why) => Err(format!("`{text}` is not a valid DNS label: {why}")),
        None => Ok(()),
    }
}

const SSH_KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// An OpenSSH public-key line: `<type> <base64 blob> [comment]`, where the blob must decode and
/// name the same key type (this catches truncated or pasted-together keys).
pub(crate) fn ssh_public_key(text: &str) -> Result<(), String> {
    let mut parts = text.split_whitespace();
    let kind = parts.next().unwrap_or("");
    if !SSH_KEY_TYPES.contains(&kind) {
        let shown: String = kind.chars().take(40).collect();
        return Err(format!(
            "not an OpenSSH public key: `{shown}` is not a key type (expected ssh-ed25519, \
             ssh-rsa, ecdsa-sha2-nistp256, ...)"
        ));
    }
    if kind == "ssh-dss" {
        return Err("ssh-dss (DSA) keys are refused by current OpenSSH; use ssh-ed25519".into());
    }
    let blob = parts.next().unwrap_or("");
    let Some(bytes) = base64_decode(blob) else {
        return Err(format!(
            "the {kind} key's data is not valid base64 (truncated or mangled?)"
        ));
    };
    if blob_key_type(&bytes) != Some(kind.as_bytes()) {
        return Err(format!(
            "the {kind} key's data does not hold a {kind} key (mangled or mismatched type?)"
        ));
    }
    Ok(())
}

/// The key type string at the start of an SSH public-key blob (a u32 length, then the bytes).
fn blob_key_type(blob: &[u8]) -> Option<&[u8]> {
    let len_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

/// Standard base64 with padding, as OpenSSH writes it.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 4 != 0 {
        return None;
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in body.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding.
    if acc != 0 {
        return None;
    }
    Some(out)
}

/// A container image pinned by digest: `name[:tag]@sha256:<64 lowercase hex>`.
/// Returns the tag when one is written.
pub(crate) fn pinned_image(text: &str) -> Result<Option<String>, String> {
    let unpinned = || {
        format!(
            "image `{text}` is not pinned by digest: append @sha256:<64 hex digits> (tags can move)"
        )
    };
    let (name_tag, digest) = text.rsplit_once('@').ok_or_else(unpinned)?;
    let hex = digest.strip_prefix("sha256:").ok_or_else(unpinned)?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "image `{text}` has a malformed digest: expected sha256: and 64 lowercase hex digits"
        ));
    }
    // A `:` after the last `/` starts the tag; one before it is a registry port.
    let last_segment_start = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_segment_start..].rfind(':') {
        Some(i) => {
            let at = last_segment_start + i;
            (&name_tag[..at], Some(name_tag[at + 1..].to_string()))
        }
        None => (name_tag, None),
    };
    let name_ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b));
    let tag_ok = tag.as_deref().is_none_or(|t| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if !name_ok || !tag_ok {
        return Err(format!("`{text}` is not a container image reference"));
    }
    Ok(tag)
}

/// The (major, minor) a tag like `v0.23.0` or `v0.14.0-amd64` names, if it names one.
pub(crate) fn tag_version(tag: &str) -> Option<(u64, u64)> {
    let rest = tag.strip_prefix('v').unwrap_or(tag);
    let mut parts = rest.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub(crate) fn http_url(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("`{text}` is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` is not a valid URL (host missing or spaces)"
        ));
    }
    Ok(())
}

pub(crate) fn absolute_path(text: &str) -> Result<(), String> {
    if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` is not an absolute path (like /usr/bin/etcd) without spaces"
        ));
    }
    Ok(())
}

/// 128 hex digits; returned lowercased.
pub(crate) fn sha512_hex(text: &str) -> Result<String, String> {
    if text.len() != 128 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "`{}` is not a sha512 (128 hex digits)",
            shorten(text, 24)
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// A file name inside a directory: no separators, not `.` or `..`.
pub(crate) fn file_name(text: &str) -> Result<(), String> {
    if text.is_empty()
        || text == "."
        || text == ".."
        || text.contains('/')
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{text}` is not a plain file name (no `/`, no spaces)"
        ));
    }
    Ok(())
}

/// A Docker network name.
pub(crate) fn docker_network_name(text: &str) -> Result<(), String> {
    let ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(format!(
            "`{text}` is not a Docker network name (letters, digits, `_.-`, starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// Edit distance, to suggest the key that was probably meant.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev + usize::from(ca != *cb);
            prev = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(prev + 1);
        }
    }
    row[b.len()]
}

/// Cuts long user text in messages.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4p2k7hB0Tq3m3x0ZbQ0xN4k5rYc1l3o8bq9jX2w1F dev@molten";

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYmE=").unwrap(), b"fooba");
        for bad in ["", "Zm9", "Zm9v!mFy", "Zm9vY===", "Zm9vYh=="] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ssh_keys_must_hold_their_type() {
        ssh_public_key(ED25519).unwrap();
        let err = ssh_public_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGx4p2k7hB0Tq3m3x0ZbQ0xN4k5rYc1l3o8bq9jX2w1F",
        )
        .unwrap_err();
        assert!(err.contains("does not hold a ssh-rsa key"), "{err}");
        assert!(ssh_public_key("ssh-ed25519 AAAA!!")
            .unwrap_err()
            .contains("base64"));
        assert!(ssh_public_key("hello")
            .unwrap_err()
            .contains("not a key type"));
    }

    #[test]
    fn images_need_a_digest() {
        let digest = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            pinned_image(&format!("quay.io/coreos/etcd:v3.5.17@{digest}")).unwrap(),
            Some("v3.5.17".into())
        );
        assert_eq!(
            pinned_image(&format!("localhost:5000/etcd@{digest}")).unwrap(),
            None
        );
        assert!(pinned_image("quay.io/coreos/etcd:v3.5.17")
            .unwrap_err()
            .contains("not pinned"));
        assert!(pinned_image("etcd@sha256:abc")
            .unwrap_err()
            .contains("malformed digest"));
        assert!(pinned_image(&format!("Etcd@{digest}"))
            .unwrap_err()
            .contains("not a container image"));
        assert_eq!(tag_version("v0.14.0-amd64"), Some((0, 14)));
        assert_eq!(tag_version("latest"), None);
    }

    #[test]
    fn cidrs_must_be_canonical() {
        assert_eq!(cidr("10.1.0.0/16").unwrap().to_string(), "10.1.0.0/16");
        assert!(cidr("10.1.0.1/16")
            .unwrap_err()
            .contains("the network is 10.1.0.0/16"));
        assert!(cidr("10.1.0.0").is_err());
    }

    #[test]
    fn labels_and_reasons() {
        dns_label("node-0").unwrap();
        for bad in ["", "Node", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad}");
        }
        assert!(unusable_reason("10.0.0.1".parse().unwrap()).is_none());
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "169.254.1.1",
            "240.0.0.1",
        ] {
            assert!(unusable_reason(bad.parse().unwrap()).is_some(), "{bad}");
        }
        assert_eq!(edit_distance("ipp", "ip"), 1);
        assert_eq!(edit_distance("subnet_length", "subnet_len"), 3);
    }
}
