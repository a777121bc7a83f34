//! What a failed attempt means for the request: retry in the group, fall back (and along which
//! chain), or give the client the error; and what it means for the deployment (cooldown).

use crate::config::router::RouterSettings;
use crate::error::is_context_overflow;

use super::attempts::Track;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    RateLimit,
    ServerError,
    Timeout,
    /// 401 / 403: the deployment's credentials.
    Auth,
    /// 404: the deployment's model or path.
    NotFound,
    ContextWindow,
    ContentPolicy,
    /// Any other client error: the request itself is wrong, so nothing else would do better.
    BadRequest,
}

/// The error as the attempt saw it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen<'a> {
    /// The upstream's status, or the status of Envoy's own reply.
    pub status: u16,
    /// Envoy answered itself (connect failure, timeout).
    pub local: bool,
    pub timed_out: bool,
    /// Error code / type / message fields of the provider's error body, when extracted.
    pub code: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub message: Option<&'a str>,
}

pub fn classify(s: &Seen) -> Class {
    if s.timed_out || s.status == 408 || s.status == 504 {
        return Class::Timeout;
    }
    if s.local {
        return Class::ServerError;
    }
    let text = |v: Option<&str>| v.unwrap_or("").to_ascii_lowercase();
    let (code, kind, message) = (text(s.code), text(s.kind), text(s.message));
    match s.status {
        429 => Class::RateLimit,
        401 | 403 => Class::Auth,
        // A Responses turn naming a response the deployment does not hold: the request's id is
        // wrong (or made elsewhere), not the deployment, which stays in service.
        404 if code == "previous_response_not_found"
            || message.starts_with("previous response with id") =>
        {
            Class::BadRequest
        }
        404 => Class::NotFound,
        400..=499 => {
            if code == "context_length_exceeded" || is_context_overflow(&message) {
                Class::ContextWindow
            } else if ["content_filter", "content_policy_violation"].contains(&code.as_str())
                || kind == "content_policy_violation"
                || message.contains("content management policy")
                || message.contains("content policy")
                || message.contains("responsibleaipolicyviolation")
            {
                Class::ContentPolicy
            } else {
                Class::BadRequest
            }
        }
        _ => Class::ServerError,
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another attempt in the same group.
    Retry,
    /// Move along a chain of groups (the current one, or switch to another track).
    Fallback(Track),
    /// The client gets this error.
    GiveUp,
}

/// Index into `AttemptState::class_retries`, for classes the retry policy counts.
pub fn policy_slot(class: Class) -> Option<usize> {
    match class {
        Class::RateLimit => Some(0),
        Class::ServerError => Some(1),
        Class::Timeout => Some(2),
        _ => None,
    }
}

fn retry_budget(settings: &RouterSettings, class: Class) -> u32 {
    let p = settings.retry_policy;
    match class {
        Class::RateLimit => p.rate_limit.unwrap_or(settings.num_retries),
        Class::ServerError => p.internal_server.unwrap_or(settings.num_retries),
        Class::Timeout => p.timeout.unwrap_or(settings.num_retries),
        _ => 0,
    }
}

/// Decides the next step. `spent` is how many retries of this class the request already made.
pub fn next(settings: &RouterSettings, class: Class, spent: u32) -> Next {
    match class {
        Class::RateLimit | Class::ServerError | Class::Timeout => {
            if spent < retry_budget(settings, class) {
                Next::Retry
            } else {
                Next::Fallback(Track::Normal)
            }
        }
        Class::Auth | Class::NotFound => Next::Fallback(Track::Normal),
        Class::ContextWindow => Next::Fallback(Track::ContextWindow),
        Class::ContentPolicy => Next::Fallback(Track::ContentPolicy),
        Class::BadRequest => Next::GiveUp,
    }
}

/// Whether the failure says something about the deployment (counts towards a cooldown), and
/// whether it cools the deployment down at once.
pub fn health_effect(class: Class, group_has_others: bool) -> Option<bool> {
    match class {
        Class::Auth | Class::NotFound => Some(true),
        Class::RateLimit => Some(group_has_others),
        Class::ServerError | Class::Timeout => Some(false),
        Class::ContextWindow | Class::ContentPolicy | Class::BadRequest => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::router::RetryPolicy;

    fn seen(
        status: u16,
        code: Option<&'static str>,
        message: Option<&'static str>,
    ) -> Seen<'static> {
        Seen {
            status,
            code,
            message,
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&seen(429, None, None)), Class::RateLimit);
        assert_eq!(classify(&seen(503, None, None)), Class::ServerError);
        assert_eq!(classify(&seen(504, None, None)), Class::Timeout);
        assert_eq!(
            classify(&Seen {
                status: 503,
                local: true,
                ..Default::default()
            }),
            Class::ServerError
        );
        assert_eq!(classify(&seen(401, None, None)), Class::Auth);
        assert_eq!(classify(&seen(404, None, None)), Class::NotFound);
        // An unknown previous_response_id is the request's error, not the deployment's.
        assert_eq!(
            classify(&seen(404, Some("previous_response_not_found"), None)),
            Class::BadRequest
        );
        assert_eq!(
            classify(&seen(
                404,
                None,
                Some("Previous response with id 'resp_1' not found.")
            )),
            Class::BadRequest
        );
        assert_eq!(
            classify(&seen(400, Some("context_length_exceeded"), None)),
            Class::ContextWindow
        );
        assert_eq!(
            classify(&seen(
                400,
                None,
                Some("prompt is too long: 200001 tokens > 200000 maximum")
            )),
            Class::ContextWindow
        );
        assert_eq!(
            classify(&seen(400, Some("content_filter"), None)),
            Class::ContentPolicy
        );
        assert_eq!(
            classify(&seen(400, None, Some("The response was filtered due to the prompt triggering Azure OpenAI's content management policy."))),
            Class::ContentPolicy
        );
        assert_eq!(
            classify(&seen(400, None, Some("temperature: out of range"))),
            Class::BadRequest
        );
    }

    #[test]
    fn decisions_follow_the_retry_policy() {
        let s = RouterSettings {
            num_retries: 2,
            retry_policy: RetryPolicy {
                rate_limit: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(next(&s, Class::RateLimit, 0), Next::Retry);
        assert_eq!(next(&s, Class::RateLimit, 1), Next::Fallback(Track::Normal));
        assert_eq!(next(&s, Class::ServerError, 1), Next::Retry);
        assert_eq!(
            next(&s, Class::ServerError, 2),
            Next::Fallback(Track::Normal)
        );
        assert_eq!(next(&s, Class::BadRequest, 0), Next::GiveUp);
        assert_eq!(
            next(&s, Class::ContextWindow, 0),
            Next::Fallback(Track::ContextWindow)
        );
        assert_eq!(health_effect(Class::RateLimit, true), Some(true));
        assert_eq!(health_effect(Class::RateLimit, false), Some(false));
        assert_eq!(health_effect(Class::BadRequest, true), None);
    }
}
