//! impasto-serve's one integration-test binary: HTTP limits and bad requests, access rules, runs through
//! the API, and the page end to end in headless Chromium.

mod access;
mod browser;
mod cdp;
mod common;
mod http;
mod jobs;
