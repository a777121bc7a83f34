use super::*;

fn price(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_creation,
    }
}

fn info(price: Price, max_in: u64, max_out: u64) -> ModelInfo {
    ModelInfo {
        price,
        max_input_tokens: Some(max_in),
        max_output_tokens: Some(max_out),
    }
}

#[test]
fn cost_charges_each_kind_of_token_at_its_price() {
    let p = price(3_000_000, 15_000_000, 300_000, 3_750_000);
    let usage = Usage {
        prompt_tokens: 1000,
        completion_tokens: 50,
        cached_tokens: 200,
        cache_creation_tokens: 100,
        reasoning_tokens: 20,
    };
    // 700 uncached + 200 cached + 100 written + 50 output (the 20 reasoning tokens among them).
    let expected = 700 * 3_000_000 + 200 * 300_000 + 100 * 3_750_000 + 50 * 15_000_000;
    assert_eq!(cost_pico(&p, &usage), expected);
    assert_eq!(cost_pico(&p, &usage), 3_285_000_000); // $0.003285
}

#[test]
fn cost_of_plain_usage_and_of_nothing() {
    let p = price(150_000, 600_000, 75_000, 150_000);
    let usage = Usage {
        prompt_tokens: 12,
        completion_tokens: 7,
        ..Usage::default()
    };
    assert_eq!(cost_pico(&p, &usage), 12 * 150_000 + 7 * 600_000);
    assert_eq!(cost_pico(&p, &Usage::default()), 0);
    assert_eq!(cost_pico(&Price::default(), &usage), 0);
}

#[test]
fn cost_never_charges_cached_tokens_twice_even_when_usage_is_inconsistent() {
    let p = price(10, 0, 1, 100);
    let usage = Usage {
        prompt_tokens: 5,
        cached_tokens: 4,
        cache_creation_tokens: 3,
        ..Usage::default()
    };
    // The uncached remainder saturates at 0; what the provider reported as cached is still charged.
    assert_eq!(cost_pico(&p, &usage), 4 + 300);
}

#[test]
fn cost_of_huge_numbers_does_not_overflow() {
    let max = u64::MAX;
    let p = price(max, max, max, max);
    let one_term = u128::from(max) * u128::from(max);
    let only_output = Usage {
        completion_tokens: max,
        ..Usage::default()
    };
    assert_eq!(cost_pico(&p, &only_output), one_term);
    let everything = Usage {
        prompt_tokens: max,
        completion_tokens: max,
        cached_tokens: max / 2,
        cache_creation_tokens: max / 2,
        reasoning_tokens: max,
    };
    assert_eq!(cost_pico(&p, &everything), u128::MAX);
    // A realistic worst case stays exact: a million tokens at $1000 per token.
    let expensive = price(1_000_000_000_000_000, 0, 0, 0);
    let million = Usage {
        prompt_tokens: 1_000_000,
        ..Usage::default()
    };
    assert_eq!(
        cost_pico(&expensive, &million),
        1_000_000_000_000_000_000_000
    );
}

#[test]
fn usd_to_pico_rounds_to_the_nearest_pico() {
    assert_eq!(pico_from_usd(3e-6), Some(3_000_000));
    assert_eq!(pico_from_usd(1.5e-7), Some(150_000));
    assert_eq!(pico_from_usd(8.3e-8), Some(83_000));
    assert_eq!(pico_from_usd(1.4e-12), Some(1));
    assert_eq!(pico_from_usd(1.6e-12), Some(2));
    assert_eq!(pico_from_usd(0.0), Some(0));
    assert_eq!(pico_from_usd(-1e-6), None);
    assert_eq!(pico_from_usd(f64::NAN), None);
    assert_eq!(pico_from_usd(f64::INFINITY), None);
    assert_eq!(pico_from_usd(1e8), None);
    assert_eq!(pico_from_usd(1e6), Some(1_000_000_000_000_000_000));
}

#[test]
fn the_data_parses_and_every_entry_has_input_and_output_prices() {
    let t = parse(DATA).unwrap();
    assert!(
        t.source.contains("LiteLLM 1.106.2")
            && t.source
                .contains("model_prices_and_context_window_backup.json"),
        "{}",
        t.source
    );
    assert_eq!(t.extracted, "2026-11-21");
    let mut total = 0;
    for (provider, models) in &t.models {
        assert!(
            crate::providers::lookup(provider).is_some(),
            "'{provider}' is not a Tollgate provider"
        );
        assert!(!models.is_empty(), "{provider}");
        for (model, entry) in models {
            assert!(
                entry.input.is_some() && entry.output.is_some(),
                "{provider}/{model}"
            );
            assert_eq!(model, &model.to_ascii_lowercase());
        }
        total += models.len();
    }
    assert!(total > 1000, "{total}");
    assert_eq!(builtin_source().1, "2026-11-21");
}

#[test]
fn every_priced_provider_has_its_models() {
    let cases = [
        (
            "openai",
            "gpt-4o-mini",
            info(price(150_000, 600_000, 75_000, 150_000), 128_000, 16_384),
        ),
        (
            "openai",
            "text-embedding-3-small",
            info(price(20_000, 0, 20_000, 20_000), 8_191, 8_191),
        ),
        (
            "azure",
            "gpt-4o",
            info(
                price(2_500_000, 10_000_000, 1_250_000, 2_500_000),
                128_000,
                16_384,
            ),
        ),
        (
            "azure",
            "eu/gpt-4o",
            info(
                price(2_750_000, 11_000_000, 1_375_000, 1_380_000),
                128_000,
                16_384,
            ),
        ),
        (
            "anthropic",
            "claude-sonnet-4-5",
            info(
                price(3_000_000, 15_000_000, 300_000, 3_750_000),
                200_000,
                64_000,
            ),
        ),
        (
            "anthropic",
            "claude-haiku-4-5",
            info(
                price(1_000_000, 5_000_000, 100_000, 1_250_000),
                200_000,
                64_000,
            ),
        ),
        (
            "gemini",
            "gemini-2.5-flash",
            info(
                price(300_000, 2_500_000, 30_000, 300_000),
                1_048_576,
                65_536,
            ),
        ),
        (
            "gemini",
            "gemini-embedding-001",
            info(price(150_000, 0, 150_000, 150_000), 2_048, 2_048),
        ),
        (
            "bedrock",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            info(
                price(3_000_000, 15_000_000, 300_000, 3_750_000),
                200_000,
                8_192,
            ),
        ),
        (
            "bedrock",
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            info(
                price(3_000_000, 15_000_000, 300_000, 3_750_000),
                200_000,
                8_192,
            ),
        ),
        (
            "bedrock",
            "amazon.titan-embed-text-v2:0",
            info(price(20_000, 0, 20_000, 20_000), 8_192, 8_192),
        ),
        (
            "groq",
            "openai/gpt-oss-120b",
            info(price(150_000, 600_000, 75_000, 150_000), 131_072, 65_536),
        ),
        (
            "mistral",
            "mistral-large-latest",
            info(price(500_000, 1_500_000, 50_000, 500_000), 262_144, 262_144),
        ),
        (
            "mistral",
            "mistral-embed",
            info(price(100_000, 0, 100_000, 100_000), 8_192, 8_192),
        ),
        (
            "deepseek",
            "deepseek-chat",
            info(price(280_000, 420_000, 28_000, 0), 131_072, 8_192),
        ),
        (
            "xai",
            "grok-4.3",
            info(
                price(1_250_000, 2_500_000, 200_000, 1_250_000),
                1_000_000,
                1_000_000,
            ),
        ),
        (
            "together_ai",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            info(
                price(1_040_000, 1_040_000, 1_040_000, 1_040_000),
                131_072,
                131_072,
            ),
        ),
        (
            "fireworks_ai",
            "accounts/fireworks/models/deepseek-v3",
            info(price(900_000, 900_000, 900_000, 900_000), 131_072, 8_192),
        ),
        (
            "cerebras",
            "llama-3.3-70b",
            info(
                price(850_000, 1_200_000, 850_000, 850_000),
                128_000,
                128_000,
            ),
        ),
        (
            "perplexity",
            "sonar",
            info(
                price(1_000_000, 1_000_000, 1_000_000, 1_000_000),
                128_000,
                128_000,
            ),
        ),
        (
            "ollama_chat",
            "llama3",
            info(Price::default(), 8_192, 8_192),
        ),
    ];
    for (provider, model, expected) in cases {
        assert_eq!(
            builtin(provider, model),
            Some(expected),
            "{provider}/{model}"
        );
    }
}

#[test]
fn providers_without_data_and_unknown_models_have_no_entry() {
    assert_eq!(
        builtin("hosted_vllm", "meta-llama/Llama-3.1-8B-Instruct"),
        None
    );
    assert_eq!(builtin("openrouter", "anthropic/claude-sonnet-4-5"), None);
    assert_eq!(builtin("openai", "no-such-model"), None);
    assert_eq!(builtin("nosuchprovider", "gpt-4o"), None);
    // Each provider has its own prices, as in LiteLLM: Azure does not borrow OpenAI's.
    assert!(builtin("openai", "daybreak-blue-latest").is_some());
    assert_eq!(builtin("azure", "daybreak-blue-latest"), None);
    assert_eq!(builtin("openai", "claude-sonnet-4-5"), None);
    assert_eq!(builtin_count("hosted_vllm"), 0);
    assert!(builtin_count("bedrock") > 100);
}

#[test]
fn lookups_follow_litellm_name_variants() {
    let sonnet_35 = builtin("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0");
    assert!(sonnet_35.is_some());
    // Tollgate's explicit Converse route, and case.
    assert_eq!(
        builtin(
            "bedrock",
            "converse/anthropic.claude-3-5-sonnet-20241022-v2:0"
        ),
        sonnet_35
    );
    assert_eq!(
        builtin("bedrock", "Anthropic.Claude-3-5-Sonnet-20241022-v2:0"),
        sonnet_35
    );
    // A cross-region profile the data does not list is priced as its base model.
    assert_eq!(
        builtin("bedrock", "jp.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        sonnet_35
    );
    // A listed profile keeps its own price.
    let global = builtin(
        "bedrock",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    );
    assert_eq!(global.map(|m| m.price.input), Some(3_000_000), "{global:?}");
    // Dated snapshots fall back to the undated model; listed ones are exact.
    assert_eq!(
        builtin("anthropic", "claude-sonnet-4-5-2099-01-01"),
        builtin("anthropic", "claude-sonnet-4-5")
    );
    assert!(builtin("openai", "gpt-4o-mini-2024-07-18").is_some());
    // Gemini stable versions, fine-tuned OpenAI models, Azure's reasoning-series marker.
    assert_eq!(
        builtin("gemini", "gemini-2.5-flash-001"),
        builtin("gemini", "gemini-2.5-flash")
    );
    assert_eq!(
        builtin("openai", "ft:gpt-4o-mini-2024-07-18:my-org::abc123"),
        Some(info(
            price(300_000, 1_200_000, 150_000, 300_000),
            128_000,
            16_384
        ))
    );
    assert_eq!(
        builtin("azure", "o_series/gpt-4o"),
        builtin("azure", "gpt-4o")
    );
    // Groq's model ids contain slashes of their own.
    assert!(builtin("groq", "openai/gpt-oss-120b").is_some());
}

#[test]
fn base_model_may_name_its_provider() {
    let azure_gpt4o = builtin_partial("azure", "gpt-4o");
    assert!(azure_gpt4o.is_some());
    assert_eq!(builtin_for_base_model("azure", "azure/gpt-4o"), azure_gpt4o);
    assert_eq!(builtin_for_base_model("azure", "gpt-4o"), azure_gpt4o);
    assert_eq!(
        builtin_for_base_model("azure", "azure/eu/gpt-4o"),
        builtin_partial("azure", "eu/gpt-4o")
    );
    assert_eq!(
        builtin_for_base_model("hosted_vllm", "openai/gpt-4o-mini"),
        builtin_partial("openai", "gpt-4o-mini")
    );
    assert_eq!(builtin_for_base_model("azure", "my-deployment"), None);
}

#[test]
fn partial_entries_merge_field_by_field() {
    let base = Partial {
        input: Some(10),
        output: Some(20),
        cache_read: None,
        cache_creation: Some(12),
        max_input_tokens: Some(1000),
        max_output_tokens: None,
    };
    let over = Partial {
        input: Some(5),
        max_output_tokens: Some(64),
        ..Partial::default()
    };
    let merged = over.or(base);
    // The unstated cache-read price follows the overridden input price.
    assert_eq!(merged.finish(), info(price(5, 20, 5, 12), 1000, 64));
    assert!(merged.is_priced() && !merged.is_empty());
    assert!(!Partial::default().is_priced() && Partial::default().is_empty());
    assert_eq!(Partial::default().finish(), ModelInfo::default());
}
