//! `chat-page`: the chat room's browser page (`apps/chat`). Every `GET` gets the same
//! page, whose script opens a WebSocket to `/chat` on the page's own host, shows each
//! message the room sends, and posts what is typed. Other methods get `405`.

use rusm_guest::http::{IncomingRequest, Method, ResponseOutparam, respond};

/// The page: a status line, the messages, and a form to post.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rusm chat</title>
<style>
  body { font-family: sans-serif; max-width: 40rem; margin: 2rem auto; }
  #log { list-style: none; padding: 0; min-height: 10rem; border: 1px solid #ccc; }
  #log li { padding: 0.2rem 0.5rem; }
</style>
</head>
<body>
<h1>rusm chat</h1>
<p id="status">connecting</p>
<ul id="log"></ul>
<form id="post">
  <input id="text" autocomplete="off" placeholder="say something">
  <button id="send" type="submit">send</button>
</form>
<script>
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const text = document.getElementById("text");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/chat");
  socket.onopen = () => { status.textContent = "connected"; };
  socket.onclose = (e) => { status.textContent = "closed " + e.code; };
  socket.onmessage = (e) => {
    const item = document.createElement("li");
    item.textContent = e.data;
    log.appendChild(item);
  };
  document.getElementById("post").onsubmit = (e) => {
    e.preventDefault();
    if (text.value && socket.readyState === WebSocket.OPEN) {
      socket.send(text.value);
      text.value = "";
    }
  };
</script>
</body>
</html>
"#;

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    match request.method() {
        Method::Get | Method::Head => respond(
            out,
            200,
            &[("content-type", b"text/html; charset=utf-8")],
            PAGE.as_bytes(),
        ),
        _ => respond(
            out,
            405,
            &[("allow", b"GET, HEAD")],
            b"method not allowed\n",
        ),
    }
}

rusm_guest::http_handler!(handle);
