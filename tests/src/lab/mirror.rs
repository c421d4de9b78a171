//! Which Debian mirror to debootstrap from: the one the host's apt already uses, so the lab
//! needs no mirror of its own (and works wherever apt works).

use std::path::Path;

use anyhow::{bail, Result};

/// The first `deb` source for the main archive (not `-security`) found in
/// `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.list|*.sources`.
/// `MOLTEN_LAB_MIRROR` overrides it.
pub fn debian_mirror() -> Result<String> {
    if let Ok(url) = std::env::var("MOLTEN_LAB_MIRROR") {
        return Ok(url);
    }
    let mut texts = Vec::new();
    let main = Path::new("/etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(main) {
        texts.push((false, text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "list" || ext == "sources" {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    texts.push((ext == "sources", text));
                }
            }
        }
    }
    for (deb822, text) in &texts {
        let found = if *deb822 {
            from_deb822(text)
        } else {
            from_one_line(text)
        };
        if let Some(url) = found {
            return Ok(url);
        }
    }
    bail!(
        "no Debian archive found in the host's apt sources; set MOLTEN_LAB_MIRROR to a mirror URL"
    )
}

/// Is this a Debian main archive for bookworm (not security, not a third-party repo)?
fn is_debian_archive(url: &str, suites: &[&str]) -> bool {
    url.contains("debian") && !url.contains("security") && suites.contains(&super::image::SUITE)
}

fn from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut url = words.next()?;
        if url.starts_with('[') {
            // options like [signed-by=...] up to the closing bracket
            while !url.ends_with(']') {
                url = words.next()?;
            }
            url = words.next()?;
        }
        let suite = words.next()?;
        is_debian_archive(url, &[suite]).then(|| url.to_string())
    })
}

fn from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let types = field("Types")?;
        if !types.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        let uris = field("URIs")?;
        let suites = field("Suites")?;
        let suites: Vec<&str> = suites.split_whitespace().collect();
        uris.split_whitespace()
            .find(|u| is_debian_archive(u, &suites))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deb822_and_skips_security() {
        let text = "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn reads_one_line_format_with_options() {
        let text = "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            from_one_line(text).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            from_one_line("deb http://other.example/apt nodistro main\n"),
            None
        );
    }
}
