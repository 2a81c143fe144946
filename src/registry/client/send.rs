//! One request to the registry or its token realm: the retry policy
//! (GET and HEAD on transport errors, 5xx and 429; DELETE never), the
//! breaker's bookkeeping, the answer with its body read, and the mapping of
//! a final status to a typed error. No auth decisions here: the caller
//! passes the `Authorization` to send (see `handshake.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;

use super::super::parse::{self, Challenge};
use super::super::RegistryError;
use super::{origin, Client};

/// The largest body read from the registry (manifests, catalog pages, tag lists).
const BODY_LIMIT: u64 = 64 << 20;

/// How GET/HEAD requests are retried on transport errors, 5xx and 429.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles per retry, with jitter.
    pub base_delay: Duration,
    /// Cap of one delay.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 250 ms then 500 ms (each jittered down to half), at most 2 s
    /// a delay, `Retry-After` honoured up to 10 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential, capped,
    /// with jitter between half and all of it.
    fn backoff(&self, retry: u32) -> Duration {
        let capped = crate::time::backoff(self.base_delay, self.max_delay, retry);
        let jitter = rand::rng().random_range(0.5..=1.0);
        capped.mul_f64(jitter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Delete,
}

impl Method {
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
        }
    }
}

/// A request that got no HTTP answer, and whether trying again may help.
pub(super) struct SendFailure {
    error: RegistryError,
    retryable: bool,
}

/// One HTTP answer, body read.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: ureq::http::HeaderMap,
    pub(super) body: Vec<u8>,
    /// The URL asked for.
    pub(super) url: url::Url,
    /// The URL that answered: `url`, or where redirects led.
    pub(super) answered_by: url::Url,
}

impl Answer {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub(super) fn challenges(&self) -> Vec<Challenge> {
        self.headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse::parse_www_authenticate)
            .collect()
    }

    pub(super) fn message(&self) -> String {
        parse::parse_error_body(&self.body)
            .map(|body| body.message)
            .filter(|message| !message.is_empty())
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    pub(super) fn code(&self) -> Option<String> {
        parse::parse_error_body(&self.body).and_then(|body| body.code)
    }
}

impl Client {
    /// Sends one request; GET and HEAD are retried on transport errors, 5xx
    /// and 429 per the retry policy, DELETE never.
    pub(super) fn send(
        &self,
        method: Method,
        url: &url::Url,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Answer, RegistryError> {
        if let Err(refusal) = self.breaker.admit(Instant::now()) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            crate::metrics::registry_request_refused();
            return Err(RegistryError::Transport(refusal));
        }
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.send_once(method, url, accept, authorization);
            crate::metrics::registry_request(
                method.name(),
                result.as_ref().ok().map(|answer| answer.status),
                started.elapsed(),
            );
            let retry_after = match &result {
                Ok(answer) if answer.status == 429 || answer.status >= 500 => answer
                    .header("retry-after")
                    .and_then(|value| parse::parse_retry_after(value, SystemTime::now())),
                Err(failure) if failure.retryable => None,
                _ => return self.settle(result),
            };
            // Another request found the registry gone meanwhile: do not
            // keep retrying this one.
            if method == Method::Delete
                || attempt >= self.retry.attempts
                || self.breaker.is_open(Instant::now())
            {
                return self.settle(result);
            }
            let delay = match retry_after {
                Some(after) if after > self.retry.max_retry_after => return self.settle(result),
                Some(after) => after,
                None => self.retry.backoff(attempt),
            };
            let what = match &result {
                Ok(answer) => format!("HTTP {}", answer.status),
                Err(failure) => failure.error.to_string(),
            };
            log::debug!(
                "retrying {} {} in {delay:?} after {what}",
                method.name(),
                url.path()
            );
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// The last attempt's result, told to the breaker: an answer below 500
    /// proves the registry alive, a 5xx or a retryable transport failure
    /// counts against it.
    pub(super) fn settle(
        &self,
        result: Result<Answer, SendFailure>,
    ) -> Result<Answer, RegistryError> {
        match &result {
            Ok(answer) if answer.status < 500 => self.breaker.succeeded(),
            Ok(answer) => self.breaker.failed(
                Instant::now(),
                &format!("HTTP {} from {}", answer.status, answer.url.path()),
            ),
            Err(failure) if failure.retryable => self
                .breaker
                .failed(Instant::now(), &failure.error.to_string()),
            Err(_) => {}
        }
        result.map_err(|failure| failure.error)
    }

    pub(super) fn send_once(
        &self,
        method: Method,
        url: &url::Url,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Answer, SendFailure> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = match method {
            Method::Get => self.agent.get(url.as_str()),
            Method::Head => self.agent.head(url.as_str()),
            Method::Delete => self.agent.delete(url.as_str()),
        };
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let transport = |error: ureq::Error| SendFailure {
            // Certificate and protocol-level refusals do not heal by retrying
            // (rustls reports a refused certificate as InvalidData I/O).
            retryable: !matches!(
                &error,
                ureq::Error::Tls(_)
                    | ureq::Error::Rustls(_)
                    | ureq::Error::BadUri(_)
                    | ureq::Error::BodyExceedsLimit(_)
                    | ureq::Error::TlsRequired
            ) && !matches!(&error, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData),
            error: RegistryError::Transport(format!(
                "{} {}{}: {error}",
                method.name(),
                origin(url),
                url.path()
            )),
        };
        let mut response = request.call().map_err(transport)?;
        let status = response.status().as_u16();
        let answered_by = {
            use ureq::ResponseExt as _;
            url::Url::parse(&response.get_uri().to_string()).unwrap_or_else(|_| url.clone())
        };
        let headers = response.headers().clone();
        let body = if method == Method::Head {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_vec()
                .map_err(transport)?
        };
        log::trace!("{} {} -> {status}", method.name(), url.path());
        Ok(Answer {
            status,
            headers,
            body,
            url: url.clone(),
            answered_by,
        })
    }
}

/// Maps a final answer to a typed error unless it is a success.
pub(super) fn check(answer: Answer, scope: Option<&str>) -> Result<Answer, RegistryError> {
    match answer.status {
        200..=299 => Ok(answer),
        401 | 403 => Err(RegistryError::Unauthorized {
            scope: scope.map(String::from),
            message: answer.message(),
        }),
        404 | 405 => Err(RegistryError::NotFound {
            code: answer.code(),
            message: answer.message(),
        }),
        429 => Err(RegistryError::RateLimited {
            retry_after: answer
                .header("retry-after")
                .and_then(|value| parse::parse_retry_after(value, SystemTime::now())),
        }),
        status => Err(RegistryError::Server {
            status,
            message: answer.message(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(
                first >= Duration::from_millis(125) && first <= Duration::from_millis(250),
                "{first:?}"
            );
            assert!(policy.backoff(10) <= policy.max_delay);
        }
    }
}
