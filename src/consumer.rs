//! The consumer side: wrapping a local system's payload into a SendRequest, queueing it in the outbox,
//! and handing answers back by the channel the request came in by. It must not talk to the gateway itself.

use std::path::{Path, PathBuf};

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use crate::config::Config;
use crate::node::Node;
use crate::soap::{MessageId, SOAP11_NS, Version};
use crate::storage::outbox::{Channel, NewOutgoing};
use crate::xml;

/// The namespace of the routing hints the node puts in soap:Header for the gateway.
pub const ROUTING_NS: &str = "urn://smev-adapter/routing/1.0";
/// The `Id` of the element this node signs in its requests.
pub const REQUEST_DATA_ID: &str = "SIGNED_BY_CALLER";
/// The types version this node writes its own requests in.
pub const REQUEST_VERSION: Version = Version::V1_3;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("the payload is not usable XML: {0}")]
    Payload(String),
    #[error("recipient `{0}` is not a mnemonic (letters, digits, '_' or '-')")]
    Recipient(String),
    #[error("transaction code is longer than 1500 characters")]
    TransactionCode,
    #[error("signing the request failed: {0}")]
    Signing(String),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
}

/// A request ready to queue.
pub struct Built {
    pub message_id: MessageId,
    pub envelope: Vec<u8>,
}

/// Checks the payload (one well-formed element, UTF-8, no DTD) and returns the element's own text.
fn payload_element<'a>(config: &Config, payload: &'a str) -> Result<&'a str, ConsumerError> {
    let text =
        xml::utf8_text(payload.as_bytes()).map_err(|e| ConsumerError::Payload(e.to_string()))?;
    let doc =
        xml::parse(text, &config.limits.xml).map_err(|e| ConsumerError::Payload(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().namespace().is_none() {
        return Err(ConsumerError::Payload(format!(
            "the root element <{}> has no namespace; SMEV payloads are namespaced",
            root.tag_name().name()
        )));
    }
    let range = root.range();
    // Offsets are into `text`, which is `payload` minus a possible BOM.
    let offset = payload.len() - text.len();
    Ok(&payload[offset + range.start..offset + range.end])
}

fn valid_mnemonic(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 100
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Wraps `payload` into a SendRequestRequest with routing hints in soap:Header.
pub fn build_request(
    config: &Config,
    message_id: MessageId,
    payload: &str,
    recipients: &[String],
    transaction_code: Option<&str>,
) -> Result<Built, ConsumerError> {
    let element = payload_element(config, payload)?;
    if let Some(bad) = recipients.iter().find(|r| !valid_mnemonic(r)) {
        return Err(ConsumerError::Recipient(bad.clone()));
    }
    if transaction_code.is_some_and(|t| t.chars().count() > 1500) {
        return Err(ConsumerError::TransactionCode);
    }
    let mut w = Writer::new(Vec::with_capacity(element.len() + 1024));
    let v = REQUEST_VERSION;
    let _ = (|| -> std::io::Result<()> {
        w.write_event(Event::Start(
            BytesStart::new("soap:Envelope").with_attributes([("xmlns:soap", SOAP11_NS)]),
        ))?;
        w.write_event(Event::Start(
            BytesStart::new("soap:Header").with_attributes([("xmlns:a", ROUTING_NS)]),
        ))?;
        crate::soap::fault::text_element(&mut w, "a:Sender", &config.node.mnemonic)?;
        for r in recipients {
            crate::soap::fault::text_element(&mut w, "a:Recipient", r)?;
        }
        w.write_event(Event::End(BytesEnd::new("soap:Header")))?;
        w.write_event(Event::Start(BytesStart::new("soap:Body")))?;
        let op = BytesStart::new("ns:SendRequestRequest")
            .with_attributes([("xmlns:ns", v.types_ns()), ("xmlns:basic", v.basic_ns())]);
        w.write_event(Event::Start(op))?;
        w.write_event(Event::Start(
            BytesStart::new("ns:SenderProvidedRequestData")
                .with_attributes([("Id", REQUEST_DATA_ID)]),
        ))?;
        crate::soap::fault::text_element(&mut w, "ns:MessageID", message_id.as_str())?;
        if let Some(code) = transaction_code {
            crate::soap::fault::text_element(&mut w, "ns:TransactionCode", code)?;
        }
        w.write_event(Event::Start(BytesStart::new("basic:MessagePrimaryContent")))?;
        w.get_mut().extend_from_slice(element.as_bytes());
        w.write_event(Event::End(BytesEnd::new("basic:MessagePrimaryContent")))?;
        w.write_event(Event::End(BytesEnd::new("ns:SenderProvidedRequestData")))?;
        w.write_event(Event::Empty(BytesStart::new(
            "ns:CallerInformationSystemSignature",
        )))?;
        w.write_event(Event::End(BytesEnd::new("ns:SendRequestRequest")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Envelope")))
    })();
    Ok(Built {
        message_id,
        envelope: w.into_inner(),
    })
}

/// Signs a built request's SenderProvidedRequestData with `key` (CallerInformationSystemSignature).
pub fn sign(
    config: &Config,
    key: &crate::dsig::SigningKey,
    built: Built,
) -> Result<Built, ConsumerError> {
    let text = String::from_utf8(built.envelope)
        .map_err(|_| ConsumerError::Payload("not UTF-8".into()))?;
    let holder = (
        REQUEST_VERSION.types_ns(),
        "CallerInformationSystemSignature",
    );
    let signed = crate::dsig::sign_message(&text, &config.limits.xml, REQUEST_DATA_ID, holder, key)
        .map_err(|e| ConsumerError::Signing(e.to_string()))?;
    Ok(Built {
        message_id: built.message_id,
        envelope: signed.into_bytes(),
    })
}

/// The outbox record for a built request.
pub fn outgoing(
    config: &Config,
    built: Built,
    recipients: &[String],
    channel: Channel,
    channel_ref: Option<String>,
    deadline_at: Option<i64>,
) -> NewOutgoing {
    NewOutgoing {
        sender: config.node.mnemonic.clone(),
        message_id: built.message_id.to_string(),
        version: REQUEST_VERSION.as_str(),
        recipient: recipients.join(","),
        request: built.envelope,
        channel,
        channel_ref,
        deadline_at,
    }
}

/// The part of a stored SendResponseRequest a local system wants: the business element, or the rejection.
pub fn answer_payload(body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return String::new();
    };
    let Ok(doc) = roxmltree::Document::parse(text) else {
        return String::new();
    };
    let data = doc
        .descendants()
        .find(|n| n.tag_name().name() == "SenderProvidedResponseData");
    let Some(data) = data else {
        return String::new();
    };
    if let Some(primary) = data
        .children()
        .find(|n| n.tag_name().name() == "MessagePrimaryContent")
        && let Some(element) = primary.children().find(|n| n.is_element())
    {
        return text[element.range()].to_string();
    }
    data.children()
        .filter(|n| {
            n.is_element() && n.tag_name().name() != "MessageID" && n.tag_name().name() != "To"
        })
        .map(|n| text[n.range()].to_string())
        .collect()
}

/// The drop folder's layout.
pub struct Folder {
    pub outgoing: PathBuf,
    pub sent: PathBuf,
    pub failed: PathBuf,
    pub incoming: PathBuf,
}

impl Folder {
    pub fn new(root: &Path) -> Folder {
        Folder {
            outgoing: root.join("outgoing"),
            sent: root.join("sent"),
            failed: root.join("failed"),
            incoming: root.join("incoming"),
        }
    }

    pub fn create(&self) -> std::io::Result<()> {
        for d in [&self.outgoing, &self.sent, &self.failed, &self.incoming] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }
}

/// Writes `content` to `dir/name` atomically: a temporary dotfile, fsync, then rename.
pub fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Picks up complete `*.xml` files from the drop folder's outgoing/ (and outgoing/<RECIPIENT>/) until `stop`.
/// Files are written elsewhere and renamed in (dotfiles and other extensions are ignored).
pub async fn watch_folder(
    node: std::sync::Arc<Node>,
    root: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use notify::Watcher;
    let folder = Folder::new(&root);
    if let Err(e) = folder.create() {
        tracing::error!("drop folder {} cannot be created: {e}", root.display());
        return;
    }
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify_wake = wake.clone();
    // Events only wake the scan; a periodic scan covers file systems where events are lost.
    let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        notify_wake.notify_one()
    });
    let _watcher = match watcher {
        Ok(mut w) => w
            .watch(&folder.outgoing, notify::RecursiveMode::Recursive)
            .map(|()| w)
            .ok(),
        Err(e) => {
            tracing::warn!(
                "cannot watch {}: {e}; scanning every second instead",
                folder.outgoing.display()
            );
            None
        }
    };
    loop {
        let scan_node = node.clone();
        let scan_root = root.clone();
        if let Err(e) =
            tokio::task::spawn_blocking(move || scan_outgoing(&scan_node, &Folder::new(&scan_root)))
                .await
        {
            tracing::error!("scanning the drop folder panicked: {e}");
        }
        tokio::select! {
            () = wake.notified() => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => break,
        }
    }
}

/// One pass over outgoing/: each complete file is queued and moved to sent/, or moved to failed/ with a reason.
pub fn scan_outgoing(node: &Node, folder: &Folder) {
    let mut files: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(&folder.outgoing) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if let Ok(inner) = std::fs::read_dir(&path) {
                for f in inner
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| is_ready_xml(p))
                {
                    files.push((f, vec![name.clone()]));
                }
            }
        } else if is_ready_xml(&path) {
            files.push((path, Vec::new()));
        }
    }
    files.sort();
    for (path, recipients) in files {
        pick_up(node, folder, &path, &recipients);
    }
}

fn is_ready_xml(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    !name.starts_with('.') && name.ends_with(".xml") && p.is_file()
}

fn pick_up(node: &Node, folder: &Folder, path: &Path, recipients: &[String]) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let queued = std::fs::read(path)
        .map_err(|e| format!("cannot read the file: {e}"))
        .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_string()))
        .and_then(|payload| {
            let built = build_request(
                &node.config,
                node.new_message_id(),
                &payload,
                recipients,
                None,
            )
            .and_then(|b| sign(&node.config, &node.trust.key, b))
            .map_err(|e| e.to_string())?;
            let message_id = built.message_id.to_string();
            let record = outgoing(
                &node.config,
                built,
                recipients,
                Channel::Folder,
                Some(name.clone()),
                None,
            );
            node.store
                .queue_outgoing_blocking(record)
                .map_err(|e| e.to_string())?;
            Ok(message_id)
        });
    let moved = match &queued {
        Ok(message_id) => {
            tracing::info!(message_id = %message_id, file = %name, "picked up from the drop folder");
            std::fs::rename(path, folder.sent.join(format!("{message_id}.{name}")))
        }
        Err(reason) => {
            tracing::warn!(file = %name, "refused from the drop folder: {reason}");
            let _ = std::fs::write(
                folder.failed.join(format!("{name}.error.txt")),
                format!("{reason}\n"),
            );
            std::fs::rename(path, folder.failed.join(&name))
        }
    };
    if let Err(e) = moved {
        tracing::error!(file = %name, "cannot move a picked-up file out of outgoing/: {e}");
    }
}
