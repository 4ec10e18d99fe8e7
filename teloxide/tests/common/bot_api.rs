//! A mock Telegram Bot API on 127.0.0.1: answers `getMe`, `getWebhookInfo` and
//! `getUpdates` (with updates the test releases, confirmed by `offset` as Telegram does),
//! records every `sendMessage`. HTTP/1.1 with keep-alive, bodies by `content-length`, which
//! is what teloxide's reqwest client sends. Each bot token has its own queue of updates,
//! so two dispatchers with two tokens on one mock are two bot instances that each get a
//! share of the updates (webhooks behind a load balancer), answering into one record.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The token of the bot that `BotApi::user_says` talks to.
pub const TOKEN: &str = "4242:TEST";

/// A reply the bot sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub chat: i64,
    pub text: String,
}

#[derive(Default)]
struct State {
    /// Released updates not yet confirmed, oldest first, per bot token.
    pending: HashMap<String, VecDeque<Value>>,
    next_update_id: i64,
    next_message_id: i64,
    sent: Vec<Sent>,
    /// Every method called, in order.
    calls: Vec<String>,
}

/// The running mock.
#[derive(Clone)]
pub struct BotApi {
    pub url: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl BotApi {
    /// Listens on a free port of 127.0.0.1 until the runtime ends.
    pub async fn start() -> BotApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let api = BotApi {
            url,
            state: Arc::default(),
            changed: Arc::default(),
        };
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        api
    }

    /// Releases a text message from user `chat` in private chat `chat`.
    pub fn user_says(&self, chat: i64, text: &str) {
        self.user_says_to(TOKEN, chat, text);
    }

    /// Releases a message of `chat` to the bot with token `token` only.
    pub fn user_says_to(&self, token: &str, chat: i64, text: &str) {
        let mut state = self.state.lock().unwrap();
        state.next_update_id += 1;
        state.next_message_id += 1;
        let update = json!({
            "update_id": state.next_update_id,
            "message": {
                "message_id": state.next_message_id,
                "date": 1_700_000_000,
                "chat": {"id": chat, "type": "private", "first_name": format!("User{chat}")},
                "from": {"id": chat, "is_bot": false, "first_name": format!("User{chat}")},
                "text": text,
            }
        });
        state
            .pending
            .entry(token.to_owned())
            .or_default()
            .push_back(update);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The replies sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    /// The methods called so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Waits (at most 30 s) until `count` replies were sent.
    pub async fn wait_for_replies(&self, count: usize) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.changed.notified();
            let sent = self.sent();
            if sent.len() >= count {
                return sent;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("waited 30 s for {count} replies; got {sent:#?}");
            }
        }
    }

    async fn serve(&self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or((header, ""));
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
                assert!(
                    !name.eq_ignore_ascii_case("transfer-encoding"),
                    "the mock reads content-length bodies only: {header}"
                );
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            // `/bot<token>/<method>`; Telegram's method names are case-insensitive
            // (teloxide sends `GetMe`).
            let path = request_line.split_whitespace().nth(1).unwrap_or_default();
            let mut segments = path.rsplit('/');
            let method = segments.next().unwrap_or_default().to_ascii_lowercase();
            let token = segments
                .next()
                .and_then(|bot| bot.strip_prefix("bot"))
                .unwrap_or_default()
                .to_owned();
            let params: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).unwrap_or(json!({}))
            };
            let result = self.answer(&method, &token, &params).await;
            let response = json!({"ok": true, "result": result}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                response.len()
            );
            if write.write_all(head.as_bytes()).await.is_err()
                || write.write_all(response.as_bytes()).await.is_err()
            {
                return;
            }
        }
    }

    async fn answer(&self, method: &str, token: &str, params: &Value) -> Value {
        self.state.lock().unwrap().calls.push(method.to_owned());
        match method {
            "getme" => json!({
                "id": 4242, "is_bot": true, "first_name": "Form", "username": "form_bot",
                "can_join_groups": true, "can_read_all_group_messages": false,
                "supports_inline_queries": false, "can_connect_to_business": false,
                "has_main_web_app": false,
            }),
            "getwebhookinfo" => json!({
                "url": "", "has_custom_certificate": false, "pending_update_count": 0,
            }),
            "getupdates" => self.updates(token, params).await,
            "sendmessage" => {
                let chat = params["chat_id"].as_i64().expect("a numeric chat_id");
                let text = params["text"].as_str().unwrap_or_default().to_owned();
                let mut state = self.state.lock().unwrap();
                state.next_message_id += 1;
                state.sent.push(Sent {
                    chat,
                    text: text.clone(),
                });
                let id = state.next_message_id;
                drop(state);
                self.changed.notify_waiters();
                json!({
                    "message_id": id, "date": 1_700_000_000,
                    "chat": {"id": chat, "type": "private", "first_name": format!("User{chat}")},
                    "from": {"id": 4242, "is_bot": true, "first_name": "Form", "username": "form_bot"},
                    "text": text,
                })
            }
            _ => json!(true),
        }
    }

    /// Telegram's `getUpdates`: an `offset` confirms every update before it; waits (at
    /// most the request's `timeout`, capped at 1 s) for an update when there is none.
    async fn updates(&self, token: &str, params: &Value) -> Value {
        let offset = params["offset"].as_i64().unwrap_or(0);
        let limit = params["limit"].as_u64().unwrap_or(100) as usize;
        let wait = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0))
            .min(Duration::from_secs(1));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state.lock().unwrap();
                let pending = state.pending.entry(token.to_owned()).or_default();
                pending.retain(|update| update["update_id"].as_i64().unwrap() >= offset);
                if !pending.is_empty() {
                    return Value::Array(pending.iter().take(limit).cloned().collect());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return json!([]);
            }
        }
    }
}
