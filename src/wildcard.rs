//! Wildcard model names, as LiteLLM's pattern routing has them: a `model_name` with `*`
//! (`"*"`, `"anthropic/*"`) reaches any model name it matches, and a `*` in
//! `litellm_params.model` (`openai/*`) takes what the name's `*` matched, so the provider gets
//! the client's model id. Pure string work, used by the configuration (which group a name
//! reaches), the keys (a `models` entry may be a pattern) and the filter.

/// Longest client model name a pattern is matched against: no provider's model id comes near
/// it, and it bounds the matching work for a name of any length.
pub const MAX_NAME_BYTES: usize = 256;

pub fn is_pattern(name: &str) -> bool {
    name.contains('*')
}

/// What each `*` of `pattern` matched in `name` (each at least one character; the first `*`
/// takes as much as the rest of the pattern leaves, as LiteLLM's `(.*)` does), or `None`. A
/// pattern matches a whole name. Names longer than [`MAX_NAME_BYTES`] match nothing.
pub fn captures<'n>(pattern: &str, name: &'n str) -> Option<Vec<&'n str>> {
    if name.len() > MAX_NAME_BYTES {
        return None;
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let tail = name.strip_prefix(first)?;
    let mut out = Vec::with_capacity(rest.len());
    if rest.is_empty() {
        return tail.is_empty().then_some(out);
    }
    after_star(tail, &rest, &mut out).then_some(out)
}

/// Matches `s` against `*lit0*lit1...*litN` (the literals after each star), pushing captures.
fn after_star<'n>(s: &'n str, literals: &[&str], out: &mut Vec<&'n str>) -> bool {
    let Some((lit, more)) = literals.split_first() else {
        return s.is_empty();
    };
    if more.is_empty() {
        // The last star takes everything before the pattern's suffix.
        let Some(cap) = s.strip_suffix(lit).filter(|c| !c.is_empty()) else {
            return false;
        };
        out.push(cap);
        return true;
    }
    if lit.is_empty() {
        // `**`: the first star takes one character, the next the rest (refused in configs).
        let Some(c) = s.chars().next() else {
            return false;
        };
        let (cap, rest) = s.split_at(c.len_utf8());
        out.push(cap);
        return after_star(rest, more, out) || {
            out.pop();
            false
        };
    }
    // Greedy: the rightmost place for the literal first (overlapping places included).
    for i in (1..s.len()).rev() {
        let (Some(cap), Some(rest)) = (s.get(..i), s.get(i..).and_then(|r| r.strip_prefix(lit)))
        else {
            continue;
        };
        out.push(cap);
        if after_star(rest, more, out) {
            return true;
        }
        out.pop();
    }
    false
}

pub fn matches(pattern: &str, name: &str) -> bool {
    captures(pattern, name).is_some()
}

/// `template` with its `*`s replaced, in order, by `captures` (a `*` beyond them stays).
pub fn fill(template: &str, captures: &[&str]) -> String {
    let mut out =
        String::with_capacity(template.len() + captures.iter().map(|c| c.len()).sum::<usize>());
    let mut caps = captures.iter();
    for (i, part) in template.split('*').enumerate() {
        if i > 0 {
            out.push_str(caps.next().copied().unwrap_or("*"));
        }
        out.push_str(part);
    }
    out
}

/// The name a pattern gives a model id its model template matched: the reverse of [`fill`],
/// for listing the models a wildcard serves (`*` / `openai/*` lists `gpt-4o` as `gpt-4o`,
/// `anthropic/*` / `anthropic/*` lists `claude-...` as `anthropic/claude-...`).
pub fn name_for(pattern: &str, model_template: &str, model: &str) -> Option<String> {
    let caps = captures(model_template, model)?;
    (caps.len() == pattern.matches('*').count()).then(|| fill(pattern, &caps))
}

/// Orders patterns as LiteLLM does: the longer pattern is the more specific, then the one with
/// more wildcards; sorting by this key, descending, tries the most specific first.
pub fn specificity(pattern: &str) -> (usize, usize) {
    (pattern.len(), pattern.matches('*').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_takes_the_rest_of_the_name() {
        assert_eq!(captures("*", "gpt-4o-mini"), Some(vec!["gpt-4o-mini"]));
        assert_eq!(
            captures("anthropic/*", "anthropic/claude-sonnet-4-5"),
            Some(vec!["claude-sonnet-4-5"])
        );
        assert_eq!(captures("anthropic/*", "claude-sonnet-4-5"), None);
        assert_eq!(
            captures("anthropic/*", "anthropic/"),
            None,
            "a star takes one character or more"
        );
        assert_eq!(captures("*", ""), None);
        assert_eq!(captures("gpt", "gpt"), Some(vec![]));
        assert_eq!(captures("gpt", "gpt-4o"), None);
    }

    #[test]
    fn several_stars_capture_in_order() {
        assert_eq!(
            captures("fo::*::static::*", "fo::hi::static::there"),
            Some(vec!["hi", "there"])
        );
        // The first star is greedy, like LiteLLM's `(.*)`.
        assert_eq!(captures("*-*", "a-b-c"), Some(vec!["a-b", "c"]));
        assert_eq!(
            captures("*meta.llama3*", "hello-meta.llama3-70b"),
            Some(vec!["hello-", "-70b"])
        );
        assert_eq!(captures("*-mini", "gpt-4o-mini"), Some(vec!["gpt-4o"]));
        assert_eq!(captures("*-mini", "gpt-4o"), None);
        assert_eq!(captures("a**", "abc"), Some(vec!["b", "c"]));
        // Places of a literal may overlap.
        assert_eq!(captures("*aa*b", "xaaab"), Some(vec!["x", "a"]));
    }

    #[test]
    fn long_names_match_nothing() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(captures("*", &long), None);
        assert!(matches("*", &"x".repeat(MAX_NAME_BYTES)));
    }

    #[test]
    fn multibyte_names_split_on_characters() {
        assert_eq!(captures("é*", "éè"), Some(vec!["è"]));
        assert_eq!(captures("**", "éè"), Some(vec!["é", "è"]));
    }

    #[test]
    fn fill_and_name_for_are_inverse() {
        assert_eq!(fill("*", &["gpt-4o"]), "gpt-4o");
        assert_eq!(fill("fo::*::static::*", &["a", "b"]), "fo::a::static::b");
        assert_eq!(fill("fixed", &["a"]), "fixed");
        assert_eq!(name_for("*", "*", "gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(
            name_for("anthropic/*", "*", "claude-opus-4-5").as_deref(),
            Some("anthropic/claude-opus-4-5")
        );
        assert_eq!(
            name_for("my-*", "claude-*", "claude-opus-4-5").as_deref(),
            Some("my-opus-4-5")
        );
        assert_eq!(name_for("my-*", "claude-*", "gpt-4o"), None);
    }

    #[test]
    fn longer_patterns_are_more_specific() {
        let mut p = vec!["*", "anthropic/*", "anthropic/claude-*"];
        p.sort_by_key(|p| std::cmp::Reverse(specificity(p)));
        assert_eq!(p, ["anthropic/claude-*", "anthropic/*", "*"]);
    }
}
