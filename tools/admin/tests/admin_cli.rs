//! The admin CLI against a real control server (in process, real HTTP, real store).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use switchyard_admin::{execute, Args, Cmd, RoomCmd, ServiceCmd};
use switchyard_config::{Config, Port};
use switchyard_control::server;

async fn start() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.management_api.ip_address = "127.0.0.1".into();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.management_api.port = Port(probe.local_addr().unwrap().port());
    drop(probe);
    let listener = server::bind(&config).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let prepared = server::prepare(config).unwrap();
    tokio::spawn(server::serve(
        prepared.state,
        listener,
        std::future::pending(),
    ));
    (dir, url)
}

fn args(dir: &tempfile::TempDir, url: &str, owt: bool, command: Cmd) -> Args {
    Args {
        url: url.into(),
        credentials: dir.path().join("data/super-service.json"),
        owt,
        command,
    }
}

#[tokio::test]
async fn creates_lists_and_tokens_with_either_scheme() {
    let (dir, url) = start().await;
    for owt in [false, true] {
        let out = execute(&args(
            &dir,
            &url,
            owt,
            Cmd::Rooms {
                action: RoomCmd::Create {
                    name: format!("demo-{owt}"),
                    options: Some("{\"participantLimit\": 4}".into()),
                },
            },
        ))
        .await
        .unwrap();
        let room: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(room["participantLimit"], 4);
        let id = room["_id"].as_str().unwrap().to_string();
        let token = execute(&args(
            &dir,
            &url,
            owt,
            Cmd::Token {
                room: id.clone(),
                user: "alice".into(),
                role: "viewer".into(),
            },
        ))
        .await
        .unwrap();
        assert!(token.len() > 100, "{token}");
        let got = execute(&args(
            &dir,
            &url,
            owt,
            Cmd::Call {
                method: "get".into(),
                path: format!("/v1/rooms/{id}"),
                body: None,
            },
        ))
        .await
        .unwrap();
        assert!(got.contains(&format!("demo-{owt}")));
    }
    let list = execute(&args(
        &dir,
        &url,
        false,
        Cmd::Rooms {
            action: RoomCmd::List {
                page: Some(2),
                per_page: Some(1),
            },
        },
    ))
    .await
    .unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["name"], "demo-true");
    let svc = execute(&args(
        &dir,
        &url,
        false,
        Cmd::Services {
            action: ServiceCmd::Create {
                name: "tenant".into(),
            },
        },
    ))
    .await
    .unwrap();
    assert!(svc.contains("\"key\""));
}

#[tokio::test]
async fn errors_say_what_went_wrong() {
    let (dir, url) = start().await;
    let e = execute(&args(
        &dir,
        &url,
        false,
        Cmd::Rooms {
            action: RoomCmd::Create {
                name: "x".into(),
                options: Some("{oops".into()),
            },
        },
    ))
    .await
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("OPTIONS is not valid JSON"),
        "{e:#}"
    );
    let e = execute(&args(
        &dir,
        &url,
        false,
        Cmd::Rooms {
            action: RoomCmd::Get { id: "none".into() },
        },
    ))
    .await
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("404") && format!("{e:#}").contains("room not found"),
        "{e:#}"
    );
    let mut a = args(
        &dir,
        &url,
        false,
        Cmd::Rooms {
            action: RoomCmd::List {
                page: None,
                per_page: None,
            },
        },
    );
    a.credentials = dir.path().join("missing.json");
    let e = execute(&a).await.unwrap_err();
    assert!(format!("{e:#}").contains("missing.json"), "{e:#}");
}
