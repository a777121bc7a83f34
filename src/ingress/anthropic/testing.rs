//! Test helpers: a Messages API stream split into events and accumulated into the final message
//! the way the `anthropic` SDK does, checking the protocol on the way.

use serde_json::{json, Value};

/// Splits a stream into (event name, data) pairs, checking the SSE framing.
pub fn events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

/// Builds the final message from the events as the `anthropic` SDK's accumulator does, checking
/// the protocol on the way: starts first, deltas to started blocks, one stop per block.
pub fn accumulate(evs: &[(String, Value)]) -> Value {
    let mut msg = Value::Null;
    let mut stopped = Vec::new();
    let mut json_buf: Vec<String> = Vec::new();
    for (name, d) in evs {
        match name.as_str() {
            "message_start" => {
                assert!(msg.is_null(), "one message_start");
                msg = d["message"].clone();
            }
            "ping" => {}
            "content_block_start" => {
                let blocks = msg["content"].as_array_mut().unwrap();
                assert_eq!(d["index"], blocks.len(), "blocks in order");
                blocks.push(d["content_block"].clone());
                json_buf.push(String::new());
                stopped.push(false);
            }
            "content_block_delta" => {
                let i = d["index"].as_u64().unwrap() as usize;
                let block = &mut msg["content"][i];
                let delta = &d["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        assert!(!stopped[i]);
                        let s = block["text"].as_str().unwrap().to_string();
                        block["text"] = json!(s + delta["text"].as_str().unwrap());
                    }
                    "thinking_delta" => {
                        assert!(!stopped[i]);
                        let s = block["thinking"].as_str().unwrap().to_string();
                        block["thinking"] = json!(s + delta["thinking"].as_str().unwrap());
                    }
                    "signature_delta" => {
                        assert!(!stopped[i]);
                        block["signature"] = delta["signature"].clone();
                    }
                    "input_json_delta" => {
                        assert_eq!(block["type"], "tool_use");
                        json_buf[i].push_str(delta["partial_json"].as_str().unwrap());
                        if let Ok(v) = serde_json::from_str::<Value>(&json_buf[i]) {
                            block["input"] = v;
                        }
                    }
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                let i = d["index"].as_u64().unwrap() as usize;
                assert!(!stopped[i], "one stop per block");
                stopped[i] = true;
            }
            "message_delta" => {
                msg["stop_reason"] = d["delta"]["stop_reason"].clone();
                msg["usage"] = d["usage"].clone();
            }
            "message_stop" => assert!(stopped.iter().all(|s| *s), "all blocks stopped"),
            other => panic!("{other}"),
        }
    }
    msg
}
