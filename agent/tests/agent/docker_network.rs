//! The BOSH network against a real dockerd (isolated by the testkit: own data and exec roots,
//! socket, no docker0, no iptables). Each test uses its own subnet so concurrent daemons never
//! put two bridges on one range.

use bollard::Docker;
use ipnet::Ipv4Net;
use mc::docker::{self, NetworkError, NetworkOutcome};
use molten_testkit::docker::Dockerd;

/// What `docker network inspect` (the CLI, independent of our client) says.
fn inspect(dockerd: &Dockerd, name: &str) -> (String, String, String, String) {
    let out = dockerd
        .cli(&[
            "network",
            "inspect",
            "--format",
            "{{.Driver}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}} \
             {{index .Options \"com.docker.network.driver.mtu\"}}",
            name,
        ])
        .unwrap();
    let fields: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    assert_eq!(fields.len(), 4, "unexpected inspect output {out:?}");
    (
        fields[0].clone(),
        fields[1].clone(),
        fields[2].clone(),
        fields[3].clone(),
    )
}

/// `ensure_bosh_network` for the network "bosh" on `subnet`, its gateway the first address.
async fn ensure_bosh(
    client: &Docker,
    subnet: &str,
    mtu: u32,
) -> Result<NetworkOutcome, NetworkError> {
    let subnet: Ipv4Net = subnet.parse().unwrap();
    let gateway = subnet.hosts().next().unwrap();
    docker::ensure_bosh_network(client, "bosh", subnet, gateway, mtu).await
}

fn network_id(dockerd: &Dockerd, name: &str) -> String {
    dockerd
        .cli(&["network", "inspect", "--format", "{{.Id}}", name])
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn created_on_the_subnet_then_unchanged() {
    let dockerd = Dockerd::start().unwrap();
    let client = docker::connect(&dockerd.host(), None).await.unwrap();

    let outcome = ensure_bosh(&client, "10.231.1.0/24", 1410).await.unwrap();
    assert_eq!(outcome, NetworkOutcome::Created);
    assert_eq!(
        inspect(&dockerd, "bosh"),
        (
            "bridge".into(),
            "10.231.1.0/24".into(),
            "10.231.1.1".into(),
            "1410".into()
        )
    );
    let id = network_id(&dockerd, "bosh");

    let again = ensure_bosh(&client, "10.231.1.0/24", 1410).await.unwrap();
    assert_eq!(again, NetworkOutcome::Unchanged);
    assert_eq!(
        network_id(&dockerd, "bosh"),
        id,
        "an unchanged network is kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recreated_when_the_subnet_changes_and_nothing_is_attached() {
    let dockerd = Dockerd::start().unwrap();
    let client = docker::connect(&dockerd.host(), None).await.unwrap();
    ensure_bosh(&client, "10.231.2.0/24", 1450).await.unwrap();
    let old_id = network_id(&dockerd, "bosh");

    let outcome = ensure_bosh(&client, "10.231.3.0/24", 1450).await.unwrap();
    assert_eq!(
        outcome,
        NetworkOutcome::Recreated {
            old_subnet: "10.231.2.0/24".into()
        }
    );
    let (_, subnet, gateway, mtu) = inspect(&dockerd, "bosh");
    assert_eq!(
        (subnet.as_str(), gateway.as_str(), mtu.as_str()),
        ("10.231.3.0/24", "10.231.3.1", "1450")
    );
    assert_ne!(network_id(&dockerd, "bosh"), old_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_container_is_a_conflict_and_the_network_stays() {
    let dockerd = Dockerd::start().unwrap();
    dockerd.import_busybox_image("busybox").unwrap();
    let client = docker::connect(&dockerd.host(), None).await.unwrap();
    ensure_bosh(&client, "10.231.4.0/24", 1450).await.unwrap();
    dockerd
        .cli(&[
            "run",
            "-d",
            "--name",
            "vm-1",
            "--network",
            "bosh",
            "busybox",
            "sleep",
            "300",
        ])
        .unwrap();

    let err = ensure_bosh(&client, "10.231.5.0/24", 1450)
        .await
        .unwrap_err();
    match &err {
        NetworkError::Conflict {
            name,
            existing_subnet,
            attached,
            ..
        } => {
            assert_eq!(name, "bosh");
            assert_eq!(existing_subnet, "10.231.4.0/24");
            assert_eq!(attached, &["vm-1"]);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("vm-1"), "{err}");
    let (_, subnet, _, _) = inspect(&dockerd, "bosh");
    assert_eq!(subnet, "10.231.4.0/24", "the network in use is left alone");

    // The container goes away; the next converge recreates the network.
    dockerd.cli(&["rm", "-f", "vm-1"]).unwrap();
    let outcome = ensure_bosh(&client, "10.231.5.0/24", 1450).await.unwrap();
    assert!(
        matches!(outcome, NetworkOutcome::Recreated { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_down_is_a_clear_error() {
    let dockerd = Dockerd::start().unwrap();
    let host = dockerd.host();
    dockerd.stop().unwrap();
    let err = docker::connect(&host, None).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&host), "{text}");
}
