//! The bank workload on etcd's KV API (the v3 JSON gateway, through HAProxy's client
//! frontend): the same accounts and history as the SQL bank, as keys.
//!
//! - `/roachlab/bank/accounts/<id>` → the balance, as decimal text
//! - `/roachlab/bank/transfers/<uuid>` → `{"from":..,"to":..,"amount":..}`
//!
//! A transfer reads both accounts, then commits one transaction that puts both balances and
//! the history key, guarded by `mod_revision` compares on both accounts. A failed compare is
//! a conflict: retried, counted as a retry. Outcomes: nothing sent or the reads failed →
//! `fail`; the transaction request refused before it was sent (connection refused) → `fail`;
//! any other error on the transaction request (timeout, lost connection, an etcd error such
//! as `request timed out`, whose proposal may still commit) → `ambiguous`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use uuid::Uuid;

use super::{CheckReport, OpRecord, OpResult, Outcome, Transfer, Transferer};
use crate::{Error, Result};

const ACCOUNTS: &str = "/roachlab/bank/accounts/";
const TRANSFERS: &str = "/roachlab/bank/transfers/";

fn account_key(id: i64) -> String {
    format!("{ACCOUNTS}{id:08}")
}

/// The end of a prefix range (the prefix with its last byte incremented).
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    *b.last_mut().expect("non-empty prefix") += 1;
    String::from_utf8(b).expect("ASCII prefix")
}

#[derive(Debug, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
    #[serde(default)]
    header: Option<ResponseHeader>,
}

/// etcd's `ResponseHeader` (int64 values as JSON strings, grpc-gateway style).
#[derive(Debug, Deserialize)]
struct ResponseHeader {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Kv {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TxnResponse {
    #[serde(default)]
    succeeded: bool,
}

fn decode(s: &str) -> String {
    B64.decode(s).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()
}

/// An etcd v3 gateway client for one endpoint (`http://127.0.0.1:PORT`).
#[derive(Debug, Clone)]
pub struct Kv3 {
    endpoint: String,
    http: reqwest::Client,
    timeout: Duration,
    /// When `http` (and so its connection) was made.
    born: std::time::Instant,
}

/// Why a request failed.
enum CallError {
    /// The request was never sent (connection refused).
    NotSent(String),
    /// Sent; the outcome is unknown or the server said no.
    Other(String),
}

impl CallError {
    fn text(&self) -> String {
        match self {
            CallError::NotSent(s) | CallError::Other(s) => s.clone(),
        }
    }
}

impl Kv3 {
    /// One connection per client (each worker has its own), bounded by `timeout`.
    pub fn new(endpoint: &str, timeout: Duration) -> Self {
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), http: Self::client(timeout), timeout, born: std::time::Instant::now() }
    }

    fn client(timeout: Duration) -> reqwest::Client {
        crate::tls::http(reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).pool_max_idle_per_host(1).no_proxy())
            .build()
            .expect("HTTP client")
    }

    /// Replaces the connection: the old client (and its pooled connection) is dropped, the
    /// next request connects anew — through HAProxy, to a server it is routing to now.
    fn renew(&mut self) {
        self.http = Self::client(self.timeout);
        self.born = std::time::Instant::now();
    }

    fn age(&self) -> Duration {
        self.born.elapsed()
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> std::result::Result<T, CallError> {
        self.call_within(path, body, self.timeout).await
    }

    /// [`Kv3::call`] bounded by `within` instead of the client's timeout.
    async fn call_within<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
        within: Duration,
    ) -> std::result::Result<T, CallError> {
        let url = format!("{}{path}", self.endpoint);
        let resp = self.http.post(&url).timeout(within).json(&body).send().await.map_err(|e| {
            if e.is_connect() {
                CallError::NotSent(format!("{url}: {}", crate::engine::describe_http_error(&e)))
            } else {
                CallError::Other(format!("{url}: {}", crate::engine::describe_http_error(&e)))
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CallError::Other(e.to_string()))?;
        if !status.is_success() {
            return Err(CallError::Other(format!("{url}: HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| CallError::Other(format!("{url}: unreadable reply: {e}")))
    }

    async fn range(&self, key: &str, end: Option<&str>) -> std::result::Result<Vec<Kv>, CallError> {
        self.range_within(key, end, self.timeout).await
    }

    /// A range read at `revision` (`None`: the latest), with the revision it was read at
    /// (etcd API v3 `RangeRequest.revision`, `ResponseHeader.revision`).
    async fn range_at(&self, key: &str, end: &str, revision: Option<i64>) -> std::result::Result<(Vec<Kv>, Option<i64>), CallError> {
        let mut body = serde_json::json!({ "key": B64.encode(key), "range_end": B64.encode(end) });
        if let Some(r) = revision {
            body["revision"] = r.to_string().into();
        }
        let resp = self.call_within::<RangeResponse>("/v3/kv/range", body, self.timeout).await?;
        let at = resp.header.and_then(|h| h.revision).and_then(|r| r.parse().ok());
        Ok((resp.kvs, at))
    }

    async fn range_within(&self, key: &str, end: Option<&str>, within: Duration) -> std::result::Result<Vec<Kv>, CallError> {
        let mut body = serde_json::json!({ "key": B64.encode(key) });
        if let Some(end) = end {
            body["range_end"] = B64.encode(end).into();
        }
        Ok(self.call_within::<RangeResponse>("/v3/kv/range", body, within).await?.kvs)
    }
}

fn engine_err(e: CallError) -> Error {
    Error::engine("etcd", e.text())
}

/// How long `workload init bank` on etcd retries a failed request: right after a node is
/// killed, HAProxy still routes new connections to it until its checks fail (`inter × fall`,
/// 2 s in the lab's config) and closes them when the node refuses (`retries 2`, no
/// redispatch); a leader election fails requests for a moment too.
const INIT_RETRY_FOR: Duration = Duration::from_secs(10);

/// `workload init bank` on etcd: deletes the bank's keys and writes `rows` accounts at 0.
/// Every step is idempotent (a range deleted again, accounts put at 0 again), so a failed
/// request is retried on a new connection for [`INIT_RETRY_FOR`]. Errors: the last failure,
/// with how long it was retried.
pub async fn init(endpoint: &str, rows: i64) -> Result<()> {
    let mut kv = Kv3::new(endpoint, Duration::from_secs(30));
    for prefix in [ACCOUNTS, TRANSFERS] {
        let body = serde_json::json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        init_call(&mut kv, "/v3/kv/deleterange", body).await?;
    }
    // etcd allows at most 128 operations per transaction (--max-txn-ops).
    let mut id = 0;
    while id < rows {
        let puts: Vec<serde_json::Value> = (id..(id + 100).min(rows))
            .map(|i| serde_json::json!({ "request_put": { "key": B64.encode(account_key(i)), "value": B64.encode("0") } }))
            .collect();
        init_call(&mut kv, "/v3/kv/txn", serde_json::json!({ "success": puts })).await?;
        id += 100;
    }
    Ok(())
}

/// One of init's requests, retried on a new connection until [`INIT_RETRY_FOR`] has passed.
async fn init_call(kv: &mut Kv3, path: &str, body: serde_json::Value) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        match kv.call::<serde_json::Value>(path, body.clone()).await {
            Ok(_) => return Ok(()),
            Err(_) if start.elapsed() < INIT_RETRY_FOR => {
                kv.renew();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(Error::engine("etcd", format!("{} (retried for {} s)", e.text(), start.elapsed().as_secs())));
            }
        }
    }
}

/// The number of accounts.
pub async fn rows(endpoint: &str) -> Result<i64> {
    let kv = Kv3::new(endpoint, Duration::from_secs(30));
    let kvs = kv.range(ACCOUNTS, Some(&prefix_end(ACCOUNTS))).await.map_err(engine_err)?;
    Ok(kvs.len() as i64)
}

/// One worker's view of etcd.
pub struct EtcdTransferer {
    kv: Kv3,
    /// A request failed on transport: the next success counts as a reconnect.
    lost: bool,
    /// The operation's timeout: retries of definite failures stop when it has passed.
    timeout: Duration,
}

impl EtcdTransferer {
    pub fn new(endpoint: &str, op_timeout: Duration) -> Self {
        Self { kv: Kv3::new(endpoint, op_timeout), lost: false, timeout: op_timeout }
    }
}

/// Most conflict retries of one transfer.
const MAX_RETRIES: u32 = 30;

/// One request's bound within an operation. etcd drops proposals that are in flight when
/// leadership moves (raft refuses proposals during a transfer; a follower's forwarded one is
/// lost), and the client would otherwise wait out the whole operation timeout for an answer
/// that never comes.
const ATTEMPT: Duration = Duration::from_secs(1);

/// What became of a transaction that was sent, possibly more than once.
enum Sent {
    /// It applied (a send succeeded, or a later send's compare failed because an earlier
    /// send had applied: the transfer's history key exists).
    Applied,
    /// It did not apply and never will: its compares failed and its history key is absent
    /// (mod revisions only grow, so an earlier send still in flight can no longer succeed).
    NotApplied,
    /// No send reached etcd.
    NotSent(String),
    /// Out of time with an answer missing.
    Unknown(String),
}

impl Transferer for EtcdTransferer {
    fn transfer<'a>(&'a mut self, t: &'a Transfer) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let mut res = OpResult { outcome: Outcome::Fail, retries: 0, reconnects: 0, error: None };
            let started = std::time::Instant::now();
            // Between operations: a connection past its lifetime is replaced (see CONN_LIFETIME).
            if self.kv.age() >= super::CONN_LIFETIME {
                self.kv.renew();
            }
            loop {
                let (from_key, to_key) = (account_key(t.from), account_key(t.to));
                let within = ATTEMPT.min(self.timeout.saturating_sub(started.elapsed())).max(Duration::from_millis(50));
                let reads = futures_util::future::try_join(
                    self.kv.range_within(&from_key, None, within),
                    self.kv.range_within(&to_key, None, within),
                )
                .await;
                let (a, b) = match reads {
                    Ok((mut a, mut b)) if !a.is_empty() && !b.is_empty() => (a.remove(0), b.remove(0)),
                    Ok(_) => {
                        res.error = Some(format!("account {} or {} does not exist; run `workload init bank`", t.from, t.to));
                        return res;
                    }
                    Err(e) => {
                        // Reads write nothing: the transfer is a definite fail so far, and is
                        // retried on a new connection while it has time (a member stopping,
                        // a connection HAProxy or etcd closed).
                        self.lost = true;
                        self.kv.renew();
                        res.error = Some(e.text());
                        if res.retries < MAX_RETRIES && started.elapsed() < self.timeout {
                            res.retries += 1;
                            tokio::time::sleep(Duration::from_millis(5 << res.retries.min(6))).await;
                            continue;
                        }
                        return res;
                    }
                };
                if std::mem::take(&mut self.lost) {
                    res.reconnects += 1;
                }
                let bal = |kv: &Kv| decode(&kv.value).parse::<i64>().unwrap_or(0);
                let rev = |kv: &Kv| kv.mod_revision.clone().unwrap_or_else(|| "0".into());
                let history = serde_json::json!({ "from": t.from, "to": t.to, "amount": t.amount }).to_string();
                let body = serde_json::json!({
                    "compare": [
                        { "key": B64.encode(&from_key), "target": "MOD", "result": "EQUAL", "mod_revision": rev(&a) },
                        { "key": B64.encode(&to_key), "target": "MOD", "result": "EQUAL", "mod_revision": rev(&b) },
                    ],
                    "success": [
                        { "request_put": { "key": B64.encode(&from_key), "value": B64.encode((bal(&a) - t.amount).to_string()) } },
                        { "request_put": { "key": B64.encode(&to_key), "value": B64.encode((bal(&b) + t.amount).to_string()) } },
                        { "request_put": { "key": B64.encode(format!("{TRANSFERS}{}", t.id)), "value": B64.encode(history) } },
                    ],
                });
                match self.send(&body, t, started, &mut res).await {
                    Sent::Applied => {
                        res.outcome = Outcome::Ok;
                        res.error = None;
                        return res;
                    }
                    Sent::NotApplied if res.retries < MAX_RETRIES => {
                        // A compare failed: another transfer touched an account. Not applied.
                        res.retries += 1;
                        res.error = Some("conflict: an account changed between read and write".into());
                        tokio::time::sleep(Duration::from_millis(2 << res.retries.min(6))).await;
                    }
                    Sent::NotApplied => {
                        res.error = Some(format!("gave up after {MAX_RETRIES} conflicts"));
                        return res;
                    }
                    Sent::NotSent(e) => {
                        res.error = Some(e);
                        return res;
                    }
                    Sent::Unknown(e) => {
                        res.outcome = Outcome::Ambiguous;
                        res.error = Some(format!("during the transaction: {e}"));
                        return res;
                    }
                }
            }
        })
    }
}

impl EtcdTransferer {
    /// Sends the guarded transaction `body` of transfer `t` until its fate is known or the
    /// operation's time is up. Resending the *same* transaction is safe: its compares pin
    /// both accounts' mod revisions, so of all sends at most one can apply, and once any
    /// write touches either account none can apply any more. After a send whose answer was
    /// lost, a failed compare is resolved by reading the transfer's history key, written in
    /// the same transaction: present means one of the sends applied. Each resend counts as a
    /// retry.
    async fn send(&mut self, body: &serde_json::Value, t: &Transfer, started: std::time::Instant, res: &mut OpResult) -> Sent {
        let mut lost_answer: Option<String> = None;
        let history_key = format!("{TRANSFERS}{}", t.id);
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return match lost_answer {
                    Some(e) => Sent::Unknown(e),
                    None => Sent::NotSent(format!("timed out after {} ms before the transaction was sent", self.timeout.as_millis())),
                };
            }
            let within = ATTEMPT.min(left);
            match self.kv.call_within::<TxnResponse>("/v3/kv/txn", body.clone(), within).await {
                Ok(r) if r.succeeded => return Sent::Applied,
                Ok(_) if lost_answer.is_none() => return Sent::NotApplied,
                Ok(_) => match self.kv.range_within(&history_key, None, within).await {
                    Ok(kvs) if !kvs.is_empty() => return Sent::Applied,
                    Ok(_) => return Sent::NotApplied,
                    Err(e) => lost_answer = Some(e.text()),
                },
                Err(CallError::NotSent(e)) => {
                    self.lost = true;
                    self.kv.renew();
                    if lost_answer.is_none() {
                        res.error = Some(e);
                    }
                }
                Err(CallError::Other(e)) => {
                    self.lost = true;
                    self.kv.renew();
                    lost_answer = Some(e);
                }
            }
            res.retries += 1;
            tokio::time::sleep(Duration::from_millis(5 << res.retries.min(6))).await;
        }
    }
}

/// `workload check bank` on etcd: the same checks as the SQL bank.
pub async fn check(endpoint: &str, ops: &[OpRecord]) -> Result<CheckReport> {
    let kv = Kv3::new(endpoint, Duration::from_secs(60));
    // Both read at one revision, so a workload writing meanwhile cannot put a transfer in one
    // read and not the other (two reads at their own revisions showed false violations).
    let (accounts, at) = kv.range_at(ACCOUNTS, &prefix_end(ACCOUNTS), None).await.map_err(engine_err)?;
    let at = at.ok_or_else(|| Error::engine("etcd", "the range reply carried no header revision"))?;
    let (transfers, _) = kv.range_at(TRANSFERS, &prefix_end(TRANSFERS), Some(at)).await.map_err(engine_err)?;
    let mut r = CheckReport { accounts: accounts.len() as u64, ..Default::default() };
    let mut expected: HashMap<i64, i64> = HashMap::new();
    let mut history = HashSet::new();
    #[derive(Deserialize)]
    struct H {
        from: i64,
        to: i64,
        amount: i64,
    }
    for kv in &transfers {
        let key = decode(&kv.key);
        let Some(id) = key.strip_prefix(TRANSFERS).and_then(|s| Uuid::parse_str(s).ok()) else { continue };
        history.insert(id);
        if let Ok(h) = serde_json::from_str::<H>(&decode(&kv.value)) {
            *expected.entry(h.from).or_default() -= h.amount;
            *expected.entry(h.to).or_default() += h.amount;
        }
    }
    r.transfers_in_history = history.len() as u64;
    let mut wrong = Vec::new();
    for kv in &accounts {
        let key = decode(&kv.key);
        let Some(id) = key.strip_prefix(ACCOUNTS).and_then(|s| s.parse::<i64>().ok()) else { continue };
        let balance: i64 = decode(&kv.value).parse().unwrap_or(i64::MIN);
        r.total_balance += balance;
        let want = expected.get(&id).copied().unwrap_or(0);
        if balance != want {
            wrong.push(format!("account {id}: balance {balance}, but its history (incoming − outgoing) says {want}"));
        }
    }
    if r.total_balance != 0 {
        r.violations.push(format!("the total balance is {}, not 0: money was created or destroyed", r.total_balance));
    }
    r.violations.extend(wrong.into_iter().take(20));
    r.compare_log(ops, &history);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefix_ranges() {
        assert_eq!(account_key(42), "/roachlab/bank/accounts/00000042");
        assert_eq!(prefix_end(ACCOUNTS), "/roachlab/bank/accounts0");
        assert!(account_key(99_999_999) < prefix_end(ACCOUNTS));
    }
}
