//! flanneld's command line, the subset the stand-in honours. Like flanneld, every flag can also
//! come from the environment as `FLANNELD_<FLAG>` (upper case, `-` → `_`); a flag wins over
//! its variable. Unknown flags are errors, so a unit that expects more than the stand-in does
//! fails loudly instead of being half-served.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub etcd_endpoints: Vec<String>,
    pub etcd_prefix: String,
    /// Interface name or address whose IPv4 is the public IP when `public_ip` is not given.
    pub iface: Option<String>,
    pub public_ip: Option<Ipv4Addr>,
    pub subnet_file: PathBuf,
    /// Renew this long before the 24 h lease expires (flanneld's default: 60 min).
    pub renew_margin: Duration,
    /// `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`: etcd over mutual TLS.
    pub etcd_tls: Option<EtcdTlsFiles>,
}

/// The PEM files flanneld is given for etcd (all three, or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const FLAGS: &[&str] = &[
    "etcd-endpoints",
    "etcd-prefix",
    "iface",
    "public-ip",
    "subnet-file",
    "subnet-lease-renew-margin",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
];

impl Args {
    /// Parses `argv` (without the program name) over the `FLANNELD_*` variables in `env`.
    pub fn parse(argv: &[String], env: &BTreeMap<String, String>) -> Result<Self> {
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for flag in FLAGS {
            let var = format!("FLANNELD_{}", flag.to_ascii_uppercase().replace('-', "_"));
            if let Some(v) = env.get(&var) {
                values.insert(flag, v.clone());
            }
        }
        let mut rest = argv.iter();
        while let Some(arg) = rest.next() {
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                bail!("unexpected argument `{arg}` (flanneld-standin takes only --flags)");
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(flag) = FLAGS.iter().find(|f| **f == name) else {
                bail!(
                    "flanneld-standin does not support --{name}; it knows {}",
                    FLAGS.join(", ")
                );
            };
            let value = match inline {
                Some(v) => v,
                None => rest
                    .next()
                    .with_context(|| format!("flag --{name} needs a value"))?
                    .clone(),
            };
            values.insert(flag, value);
        }
        let endpoints = values
            .get("etcd-endpoints")
            .map_or("http://127.0.0.1:2379", String::as_str);
        let public_ip = match values.get("public-ip") {
            Some(v) if !v.is_empty() => Some(
                v.parse()
                    .with_context(|| format!("--public-ip `{v}` is not an IPv4 address"))?,
            ),
            _ => None,
        };
        let renew_margin = match values.get("subnet-lease-renew-margin") {
            Some(v) => {
                let minutes: u64 = v.parse().with_context(|| {
                    format!("--subnet-lease-renew-margin `{v}` is not a number of minutes")
                })?;
                Duration::from_secs(minutes * 60)
            }
            None => Duration::from_secs(60 * 60),
        };
        let file = |flag: &str| {
            values
                .get(flag)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let etcd_tls = match (
            file("etcd-cafile"),
            file("etcd-certfile"),
            file("etcd-keyfile"),
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(EtcdTlsFiles { ca, cert, key }),
            (None, None, None) => None,
            _ => bail!("--etcd-cafile, --etcd-certfile and --etcd-keyfile go together"),
        };
        Ok(Self {
            etcd_tls,
            etcd_endpoints: endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect(),
            etcd_prefix: values
                .get("etcd-prefix")
                .cloned()
                .unwrap_or_else(|| molten_contract::FLANNEL_DEFAULT_PREFIX.to_string())
                .trim_end_matches('/')
                .to_string(),
            iface: values.get("iface").filter(|v| !v.is_empty()).cloned(),
            public_ip,
            subnet_file: values
                .get("subnet-file")
                .map_or_else(|| PathBuf::from("/run/flannel/subnet.env"), PathBuf::from),
            renew_margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_win_over_environment() {
        let env = BTreeMap::from([
            ("FLANNELD_IFACE".to_string(), "eth9".to_string()),
            ("FLANNELD_PUBLIC_IP".to_string(), "10.0.0.9".to_string()),
        ]);
        let args = Args::parse(
            &argv(&[
                "--etcd-endpoints=http://a:2379,http://b:2379",
                "--public-ip",
                "10.0.0.1",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(args.etcd_endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(args.public_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(args.iface.as_deref(), Some("eth9"));
        assert_eq!(args.etcd_prefix, "/coreos.com/network");
        assert_eq!(args.renew_margin, Duration::from_secs(3600));
    }

    #[test]
    fn unknown_flags_and_bad_values_are_errors() {
        let env = BTreeMap::new();
        let err = Args::parse(&argv(&["--ip-masq"]), &env).unwrap_err();
        assert!(
            err.to_string().contains("does not support --ip-masq"),
            "{err}"
        );
        let err = Args::parse(&argv(&["--public-ip=nope"]), &env).unwrap_err();
        assert!(err.to_string().contains("--public-ip `nope`"), "{err}");
        let err = Args::parse(&argv(&["--etcd-cafile=/ca.pem"]), &env).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }

    #[test]
    fn etcd_tls_files_come_as_a_set() {
        let env = BTreeMap::from([("FLANNELD_ETCD_KEYFILE".to_string(), "/k.pem".to_string())]);
        let args = Args::parse(
            &argv(&["--etcd-cafile=/ca.pem", "--etcd-certfile", "/c.pem"]),
            &env,
        )
        .unwrap();
        assert_eq!(
            args.etcd_tls,
            Some(EtcdTlsFiles {
                ca: "/ca.pem".into(),
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
            })
        );
        assert_eq!(Args::parse(&[], &BTreeMap::new()).unwrap().etcd_tls, None);
    }
}
