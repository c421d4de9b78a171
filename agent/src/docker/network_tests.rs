//! The keep / create / recreate / refuse decision against a recording fake.

use std::cell::RefCell;

use super::*;

#[derive(Default)]
struct FakeDocker {
    existing: RefCell<Option<ExistingNetwork>>,
    fail_create: bool,
    calls: RefCell<Vec<String>>,
}

impl FakeDocker {
    fn with(existing: ExistingNetwork) -> Self {
        Self {
            existing: RefCell::new(Some(existing)),
            ..Self::default()
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl NetworkApi for FakeDocker {
    async fn inspect(&self, name: &str) -> anyhow::Result<Option<ExistingNetwork>> {
        self.calls.borrow_mut().push(format!("inspect {name}"));
        Ok(self.existing.borrow().clone())
    }
    async fn create(&self, wanted: &WantedNetwork) -> anyhow::Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("create {} {}", wanted.name, wanted.subnet));
        if self.fail_create {
            anyhow::bail!(
                "cannot create Docker network {}: pool overlaps",
                wanted.name
            );
        }
        *self.existing.borrow_mut() = Some(matching(wanted));
        Ok(())
    }
    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        self.calls.borrow_mut().push(format!("remove {id}"));
        *self.existing.borrow_mut() = None;
        Ok(())
    }
}

fn wanted() -> WantedNetwork {
    WantedNetwork {
        name: "bosh".into(),
        subnet: "10.1.2.0/24".parse().unwrap(),
        gateway: "10.1.2.1".parse().unwrap(),
        mtu: 1450,
    }
}

fn matching(wanted: &WantedNetwork) -> ExistingNetwork {
    ExistingNetwork {
        id: "abc123".into(),
        driver: Some("bridge".into()),
        subnet: Some(wanted.subnet.to_string()),
        gateway: Some(wanted.gateway.to_string()),
        mtu: Some(wanted.mtu.to_string()),
        attached: vec![],
    }
}

fn on_old_subnet(attached: &[&str]) -> ExistingNetwork {
    ExistingNetwork {
        subnet: Some("10.1.1.0/24".into()),
        gateway: Some("10.1.1.1".into()),
        attached: attached.iter().map(|s| s.to_string()).collect(),
        ..matching(&wanted())
    }
}

#[tokio::test]
async fn absent_network_is_created_then_unchanged() {
    let docker = FakeDocker::default();
    assert_eq!(
        ensure(&docker, &wanted()).await.unwrap(),
        NetworkOutcome::Created
    );
    assert_eq!(
        ensure(&docker, &wanted()).await.unwrap(),
        NetworkOutcome::Unchanged
    );
    assert_eq!(
        docker.calls(),
        ["inspect bosh", "create bosh 10.1.2.0/24", "inspect bosh"]
    );
}

#[tokio::test]
async fn other_subnet_without_containers_is_recreated() {
    let docker = FakeDocker::with(on_old_subnet(&[]));
    let outcome = ensure(&docker, &wanted()).await.unwrap();
    assert_eq!(
        outcome,
        NetworkOutcome::Recreated {
            old_subnet: "10.1.1.0/24".into()
        }
    );
    assert_eq!(
        docker.calls(),
        ["inspect bosh", "remove abc123", "create bosh 10.1.2.0/24"]
    );
}

#[tokio::test]
async fn other_mtu_without_containers_is_recreated_too() {
    let docker = FakeDocker::with(ExistingNetwork {
        mtu: Some("1500".into()),
        ..matching(&wanted())
    });
    assert!(matches!(
        ensure(&docker, &wanted()).await.unwrap(),
        NetworkOutcome::Recreated { .. }
    ));
}

#[tokio::test]
async fn attached_containers_make_a_conflict_and_nothing_is_touched() {
    let docker = FakeDocker::with(on_old_subnet(&["vm-1", "vm-2"]));
    let err = ensure(&docker, &wanted()).await.unwrap_err();
    match &err {
        NetworkError::Conflict {
            name,
            existing_subnet,
            mismatch,
            attached,
        } => {
            assert_eq!(name, "bosh");
            assert_eq!(existing_subnet, "10.1.1.0/24");
            assert_eq!(
                mismatch,
                "subnet 10.1.1.0/24, want 10.1.2.0/24, gateway 10.1.1.1, want 10.1.2.1"
            );
            assert_eq!(attached, &["vm-1", "vm-2"]);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("containers are attached (vm-1, vm-2)"),
        "{err}"
    );
    assert_eq!(docker.calls(), ["inspect bosh"]);
}

#[tokio::test]
async fn a_foreign_driver_counts_as_a_difference() {
    let docker = FakeDocker::with(ExistingNetwork {
        driver: Some("macvlan".into()),
        attached: vec!["db".into()],
        ..matching(&wanted())
    });
    let err = ensure(&docker, &wanted()).await.unwrap_err();
    assert!(
        err.to_string().contains("driver macvlan, want bridge"),
        "{err}"
    );
}

#[tokio::test]
async fn docker_failures_are_errors_not_ignored() {
    let docker = FakeDocker {
        fail_create: true,
        ..FakeDocker::default()
    };
    let err = ensure(&docker, &wanted()).await.unwrap_err();
    assert!(matches!(err, NetworkError::Docker(_)));
    assert!(err.to_string().contains("pool overlaps"), "{err}");
}
