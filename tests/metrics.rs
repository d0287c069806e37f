//! `GET /metrics` after real traffic: login, upstream and HTTP counters, their latency
//! histograms, the database counts and the write batch sizes, in Prometheus text.

mod common;

use common::{APPID, TestServer, metric_sample as sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_logins_upstream_calls_and_requests() {
    let server = TestServer::start().await;
    for name in ["ann", "ben", "cid"] {
        server.login_ok(&format!("dev:{name}")).await;
    }
    server.login_ok("dev:ann#again").await;
    assert_eq!(server.login("fail:40029").await.status(), 400);
    assert_eq!(server.login("fail:45011").await.status(), 429);
    assert_eq!(server.get("/wp-login.php", None).await.status(), 404);
    let token = server.token("dev:dee").await;
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
    assert_eq!(
        server.get("/v1/session", Some("garbage")).await.status(),
        401
    );

    let response = server.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(response.headers().contains_key("x-request-id"));
    let text = response.text().await.unwrap();
    let expect = |series: String, value: f64| {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    };

    let app = format!("app=\"{APPID}\"");
    expect(
        format!("wxauth_logins_total{{{app},result=\"success\"}}"),
        5.0,
    );
    expect(
        format!("wxauth_logins_total{{{app},result=\"invalid_code\"}}"),
        1.0,
    );
    expect(
        format!("wxauth_logins_total{{{app},result=\"rate_limited\"}}"),
        1.0,
    );

    let api = "api=\"jscode2session\"";
    expect(
        format!("wxauth_upstream_calls_total{{{api},result=\"ok\"}}"),
        5.0,
    );
    expect(
        format!("wxauth_upstream_calls_total{{{api},result=\"invalid_code\"}}"),
        1.0,
    );
    expect(
        format!("wxauth_upstream_calls_total{{{api},result=\"rate_limited\"}}"),
        1.0,
    );
    expect(
        format!("wxauth_upstream_call_duration_seconds_count{{{api}}}"),
        7.0,
    );
    expect(
        format!("wxauth_upstream_call_duration_seconds_bucket{{le=\"+Inf\",{api}}}"),
        7.0,
    );
    assert!(
        sample(
            &text,
            &format!("wxauth_upstream_call_duration_seconds_sum{{{api}}}")
        )
        .unwrap()
            > 0.0
    );

    let login = "route=\"/v1/login\"";
    expect(
        format!("wxauth_http_requests_total{{{login},status=\"200\"}}"),
        5.0,
    );
    expect(
        format!("wxauth_http_requests_total{{{login},status=\"400\"}}"),
        1.0,
    );
    expect(
        format!("wxauth_http_requests_total{{{login},status=\"429\"}}"),
        1.0,
    );
    expect(
        "wxauth_http_requests_total{route=\"/v1/session\",status=\"401\"}".into(),
        1.0,
    );
    expect(
        "wxauth_http_requests_total{route=\"unmatched\",status=\"404\"}".into(),
        1.0,
    );
    expect(
        format!("wxauth_http_request_duration_seconds_count{{{login}}}"),
        7.0,
    );
    expect(
        format!("wxauth_http_request_duration_seconds_bucket{{le=\"10.0\",{login}}}"),
        7.0,
    );
    assert!(
        text.contains("# TYPE wxauth_http_request_duration_seconds histogram"),
        "{text}"
    );

    expect("wxauth_sessions_live".into(), 5.0);
    expect(format!("wxauth_users{{{app}}}"), 4.0);
    assert!(sample(&text, "wxauth_db_write_batch_size_count").unwrap() >= 1.0);
    assert!(sample(&text, "wxauth_db_write_batch_size_sum").unwrap() >= 5.0);
    assert!(text.contains("wxauth_build_info{version=\""), "{text}");
    assert!(text.ends_with("# EOF\n"));

    // Scrapes count too, under their own route.
    let again = server.get("/metrics", None).await.text().await.unwrap();
    expect_in(
        &again,
        "wxauth_http_requests_total{route=\"/metrics\",status=\"200\"}",
        1.0,
    );
}

fn expect_in(text: &str, series: &str, value: f64) {
    assert_eq!(sample(text, series), Some(value), "{series} in\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_metrics_address_takes_metrics_off_the_main_one() {
    let server = TestServer::start_with(|layer| {
        layer.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    server.login_ok("dev:eve").await;
    let metrics_addr = server.app.as_ref().unwrap().metrics_addr().unwrap();

    let response = server.get("/metrics", None).await;
    assert_eq!(common::error_of(response).await, (404, "not_found".into()));
    let response = server
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    expect_in(
        &text,
        &format!("wxauth_logins_total{{app=\"{APPID}\",result=\"success\"}}"),
        1.0,
    );
    let response = server
        .http
        .get(format!("http://{metrics_addr}/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}
