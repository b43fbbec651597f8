//! HTTP/1.1: request heads (`request`), responses (`response`), the REST API
//! and the WebSocket upgrade routes (`routes`; accounts and sessions in
//! `account`, moderation and administration in `admin`, what those and the
//! desk share in `people`, the lines for an
//! operator's tools in `seclog`), the client address behind a reverse
//! proxy (`proxy`), the plain-HTTP listener beside HTTPS (`redirect`), and
//! the embedded web client (`static_files`, with the service worker's app
//! shell in `shell`).
//! Nothing here blocks: a route that needs hashing or storage submits the
//! work and answers later through the loop.

mod account;
pub(crate) mod admin;
pub mod files;
pub mod mime;
mod people;
pub mod proxy;
pub mod push;
pub mod range;
pub mod redirect;
pub mod request;
pub mod response;
pub mod routes;
mod seclog;
pub mod shell;
pub mod static_files;
pub mod upgrade;

#[cfg(test)]
mod proptests;
