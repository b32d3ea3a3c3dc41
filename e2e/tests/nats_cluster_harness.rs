//! The NATS harness the tracker cluster tests stand on (`e2e/src/nats.rs`): a single
//! JetStream server starts and answers clients, and a three-server cluster forms (every
//! server answers with JetStream on and the cluster's name, JetStream becomes healthy), keeps
//! serving when one server is killed, and takes the killed one back when it restarts.

use e2e::nats::{NatsCluster, NatsServer, CLUSTER_NAME};
use std::net::TcpStream;
use std::time::Duration;

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_single_jetstream_server_answers_clients_and_dies_with_its_handle() {
    let server = NatsServer::start().expect("nats-server starts (scripts/setup.sh installs it)");
    let info = server.info().unwrap();
    assert_eq!(info["jetstream"], true, "JetStream is on: {info}");
    server.wait_healthy(Duration::from_secs(20)).unwrap();
    let port = server.port;
    drop(server);
    assert!(!accepts(port), "the server is gone once its handle is dropped");
}

#[test]
fn a_three_server_cluster_survives_losing_one_and_takes_it_back() {
    let mut cluster = NatsCluster::start(3).expect("a 3-server NATS cluster starts");
    let names: Vec<String> = cluster.servers.iter().map(|s| s.name.clone()).collect();
    for s in &cluster.servers {
        assert!(accepts(s.port), "{} accepts TCP connections", s.name);
        let info = s.info().unwrap();
        assert_eq!(info["server_name"], s.name.as_str(), "{info}");
        assert_eq!(info["jetstream"], true, "{info}");
        assert_eq!(info["cluster"], CLUSTER_NAME, "{info}");
    }
    // JetStream needs a meta leader, which needs the routes between the servers: healthy
    // everywhere means the cluster formed.
    cluster.wait_healthy(Duration::from_secs(30)).expect("JetStream healthy on every server");

    cluster.kill(0);
    assert!(!cluster.server(0).is_running());
    assert!(!accepts(cluster.servers[0].port), "the killed server no longer accepts");
    for s in &cluster.servers[1..] {
        assert!(accepts(s.port), "{} still accepts after {} died", s.name, names[0]);
        assert_eq!(s.info().unwrap()["server_name"], s.name.as_str());
    }
    // Two of three keep a quorum: JetStream stays (or becomes again) healthy on the survivors.
    cluster.wait_healthy(Duration::from_secs(30)).expect("JetStream healthy on the two survivors");

    cluster.restart(0).expect("the killed server starts again on its ports and store");
    assert_eq!(cluster.servers[0].info().unwrap()["server_name"], names[0].as_str());
    cluster.wait_healthy(Duration::from_secs(30)).expect("the restarted server rejoins");
}
