//! `mc enroll`, renewal and the roster against the real authority (the listener of `molten serve
//! --authority`, its files and lock), then etcd 3.4 with `--client-cert-auth` started with the
//! certificates the authority issued: the member's admin identity turns access control on, the
//! worker writes its own record and not the member's. A replayed token is refused and logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc::enroll::{self, Enrolled, Settings};
use mc::etcd::{self, rbac, EtcdTls, Retry};
use mc::identity::{Kind, Roots};
use molten::authority::register::{register_nodes, NodeEnrollment, DEFAULT_TOKEN_TTL};
use molten::authority::service::AuthorityService;
use molten::authority::{https, Authority};
use molten_contract::keys;
use molten_contract::trust::{NodeTlsIdentity, SubjectAltName};
use molten_testkit::etcd::{EtcdServer, ServerTls};

fn node(name: &str, member: bool) -> NodeEnrollment {
    let ip = vec![SubjectAltName::Ip("127.0.0.1".parse().unwrap())];
    NodeEnrollment {
        name: name.into(),
        member,
        identity: NodeTlsIdentity {
            etcd_peer_sans: if member { ip.clone() } else { vec![] },
            etcd_server_sans: if member { ip.clone() } else { vec![] },
            etcd_client_cn: name.into(),
            docker_server_sans: ip,
        },
    }
}

struct Node {
    root: tempfile::TempDir,
    settings: Settings,
}

impl Node {
    fn new(name: &str, member: bool, url: &str, dir: &Path) -> Self {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        Self {
            root: tempfile::tempdir().unwrap(),
            settings: Settings {
                node: name.into(),
                member,
                authority_url: url.into(),
                authority_ca: read("authority-ca.pem"),
                roots: Roots {
                    etcd_ca: read("etcd-ca.pem"),
                    docker_ca: read("docker-ca.pem"),
                },
                state_dir: "/var/lib/molten".into(),
                private_ip: None,
            },
        }
    }

    async fn enroll(&self, token: &str) -> anyhow::Result<Enrolled> {
        let file = self.root.path().join("enroll-token");
        std::fs::write(&file, token).unwrap();
        enroll::enroll(self.root.path(), &self.settings, &file).await
    }

    fn tls(&self, kind: Kind) -> EtcdTls {
        mc::converge::trust::etcd_tls(self.root.path(), &self.settings, kind).unwrap()
    }

    fn file(&self, kind: Kind, ext: &str) -> std::path::PathBuf {
        self.root
            .path()
            .join(format!("var/lib/molten/identity/{}.{ext}", kind.name()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_enroll_with_the_real_authority_and_run_etcd_with_what_it_issued() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("test.authority");
    let now = time::OffsetDateTime::now_utc();
    let authority = Authority::init(&dir, "test", now).unwrap();
    let tokens: BTreeMap<String, String> = register_nodes(
        &authority,
        "test",
        &[node("node-a", true), node("node-b", false)],
        &[],
        now,
        DEFAULT_TOKEN_TTL,
    )
    .unwrap();
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink_logs = logs.clone();
    let sink: molten::serve::LogSink =
        Arc::new(move |line: &str| sink_logs.lock().unwrap().push(line.to_string()));
    let service = Arc::new(
        AuthorityService::load(authority.clone(), time::Duration::days(90), sink).unwrap(),
    );
    let server = https::bind(service, "127.0.0.1:0".parse().unwrap(), &[])
        .await
        .unwrap();
    let url = format!("https://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(molten::serve::Limits::default(), async move {
        let _ = stopped.await;
    }));

    let a = Node::new("node-a", true, &url, &dir);
    let b = Node::new("node-b", false, &url, &dir);
    let Enrolled::New(infos) = a.enroll(&tokens["node-a"]).await.unwrap() else {
        panic!("node-a was enrolled already")
    };
    assert_eq!(infos.len(), 5);
    assert!(matches!(
        b.enroll(&tokens["node-b"]).await.unwrap(),
        Enrolled::New(_)
    ));
    // A reboot: nothing sent (the token is spent; enrolling again would be refused).
    assert!(matches!(
        a.enroll(&tokens["node-a"]).await.unwrap(),
        Enrolled::Already(_)
    ));

    // B's token replayed (a stolen copy of its Ignition) by another machine: refused, logged,
    // and the attacker keeps nothing.
    let thief = Node::new("node-b", false, &url, &dir);
    let err = thief.enroll(&tokens["node-b"]).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("refused (token-reused)"),
        "{err:#}"
    );
    let failure = enroll::last_failure(thief.root.path(), "/var/lib/molten").unwrap();
    assert!(failure
        .to_string()
        .starts_with("could not enroll: refused (token-reused)"));
    assert!(!thief.file(Kind::EtcdClient, "key").exists());
    let logged = logs.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("REUSED ENROLLMENT TOKEN") && l.contains("\"node-b\"")),
        "{logged:#?}"
    );

    // Renewal over mTLS with the current etcd-client certificate: new keys, new certificates.
    let before = std::fs::read_to_string(a.file(Kind::DockerServer, "pem")).unwrap();
    let renewed = enroll::renew(a.root.path(), &a.settings, true)
        .await
        .unwrap();
    assert_eq!(renewed.kinds.len(), 5);
    assert_ne!(
        std::fs::read_to_string(a.file(Kind::DockerServer, "pem")).unwrap(),
        before
    );
    let roster = enroll::roster(a.root.path(), &a.settings).await.unwrap();
    assert_eq!(roster.nodes, ["node-a", "node-b"]);
    assert!(roster.revoked.is_empty());
    let roster = roster.nodes;

    // etcd with node-a's issued server certificate and the authority's etcd CA.
    let etcd_server = EtcdServer::start_tls(
        "node-a",
        ServerTls {
            ca: dir.join("etcd-ca.pem"),
            cert: a.file(Kind::EtcdServer, "pem"),
            key: a.file(Kind::EtcdServer, "key"),
        },
    )
    .unwrap();
    let endpoints = vec![etcd_server.endpoint()];
    let retry = Retry::with_budget(Duration::from_secs(5));
    let mut admin = etcd::connect(&endpoints, retry, a.tls(Kind::EtcdAdmin))
        .await
        .unwrap();
    let done = rbac::bootstrap(&mut admin, &roster).await.unwrap();
    assert_eq!(done.created, ["root", "node-a", "node-b"]);
    let mut as_b = etcd::connect(&endpoints, retry, b.tls(Kind::EtcdClient))
        .await
        .unwrap();
    etcd::put(&mut as_b, &keys::node_record("node-b"), "{}")
        .await
        .unwrap();
    let err = etcd::put(&mut as_b, &keys::node_record("node-a"), "{}")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("permission denied"), "{err:#}");
    // B's Docker certificate (Docker CA) is no etcd identity.
    let docker_as_etcd = EtcdTls::new(
        &b.settings.roots.etcd_ca,
        &std::fs::read_to_string(b.file(Kind::DockerServer, "pem")).unwrap(),
        &std::fs::read_to_string(b.file(Kind::DockerServer, "key")).unwrap(),
    );
    assert!(etcd::connect(&endpoints, retry, docker_as_etcd)
        .await
        .is_err());

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
