// Publishes sample Unify events to sfsync's Redis queues with celery-node, one line of JSON per event sent.
"use strict";

const { createHmac, randomUUID } = require("node:crypto");
const { readFileSync } = require("node:fs");
const celery = require("celery-node");

// event type -> [Celery task name, Redis queue]: the routing sfsync's workers consume
const ROUTES = {
  "email.sent": ["sfsync.email.sent", "email.sent"],
  "email.replied": ["sfsync.email.replied", "email.replied"],
  "contact.updated": ["sfsync.contact.updated", "contact.updated"],
};

const REDIS_URL = process.env.SFSYNC_REDIS_URL || "redis://localhost:6379/0";
const WORKSPACE_ID = process.env.SFSYNC_WORKSPACE_ID || "default";
// the workspace's emitter key (docs/events.md, signed events): the first key line of this file, when set
const SIGNING_KEY = signingKey(process.env.SFSYNC_SIGNING_KEY_FILE);

function signingKey(file) {
  if (!file) {
    return null;
  }
  const keys = readFileSync(file, "utf8").split("\n").map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  if (!keys.length) {
    throw new Error(`${file}: no emitter key in it`);
  }
  return keys[0];
}

// Header sfsync_signature: "v1=" + hex HMAC-SHA256 of the message body's exact bytes. celery-node's
// RedisBroker.publish sends Buffer.from(JSON.stringify(body)) (base64 on the wire): those bytes are signed.
function signed(task) {
  if (SIGNING_KEY === null) {
    return task.headers;
  }
  const body = Buffer.from(JSON.stringify(task.body), "utf8");
  const digest = createHmac("sha256", SIGNING_KEY).update(body).digest("hex");
  return { ...task.headers, sfsync_signature: `v1=${digest}` };
}

const REP = { email: "riley@seller.example", name: "Riley Rep" };
const PROSPECTS = [
  { email: "jane.doe@acme.example", first_name: "Jane", last_name: "Doe", title: "VP Sales" },
  { email: "omar@acme.example", first_name: "Omar", last_name: "Brien", title: "Head of Ops" },
];

// one run's ids, message ids and subjects never collide with another run's
const run = randomUUID().slice(0, 8);
let serial = 0;

function nextTag() {
  serial += 1;
  return `${run}-${serial}`;
}

function envelope(tag, type, data) {
  return {
    id: `evt_node_${tag}`,
    type,
    version: 1,
    workspace_id: WORKSPACE_ID,
    occurred_at: new Date().toISOString(),
    data,
  };
}

function person(prospect) {
  const { email, ...names } = prospect;
  return { emails: [email], company: "Acme", ...names };
}

function sent(prospect, origin) {
  const tag = nextTag();
  const subject = `${origin === "automated" ? "Sequence step 2" : "Following up by hand"} (node ${tag})`;
  return envelope(tag, "email.sent", {
    message_id: `<node-${tag}@mail.unify.example>`,
    thread_id: `thr_node_${run}_${prospect.first_name.toLowerCase()}`,
    origin,
    from: REP,
    to: [{ email: prospect.email, name: `${prospect.first_name} ${prospect.last_name}` }],
    subject,
    body_html: `<p>Hi ${prospect.first_name}, <b>15 minutes</b> this week?</p>`,
    sent_at: new Date().toISOString(),
    rep: { email: REP.email },
    person: person(prospect),
    sequence: origin === "automated" ? { id: "seq_1", name: "Q4 outbound", step: 2, status: "In Progress - Started" } : null,
  });
}

function replied(prospect, original) {
  const tag = nextTag();
  return envelope(tag, "email.replied", {
    message_id: `<node-${tag}@mail.acme.example>`,
    in_reply_to: original.data.message_id,
    thread_id: original.data.thread_id,
    origin: "manual",
    from: { email: prospect.email, name: `${prospect.first_name} ${prospect.last_name}` },
    to: [REP],
    subject: `Re: ${original.data.subject}`,
    body_text: "Sounds good, Thursday works.",
    sent_at: new Date().toISOString(),
    rep: { email: REP.email },
    person: person(prospect),
  });
}

function updated(prospect) {
  return envelope(nextTag(), "contact.updated", {
    person: person(prospect),
    changes: { title: prospect.title },
  });
}

// Each entry is one Celery message: an event, or a bundle (an array of events of one type).
function messages() {
  const [jane, omar] = PROSPECTS;
  const toJane = sent(jane, "automated");
  const toOmar = sent(omar, "automated");
  return [
    toJane,
    sent(jane, "manual"),
    [toOmar, sent(omar, "manual")],
    replied(jane, toJane),
    replied(omar, toOmar),
    updated(jane),
    updated(omar),
  ];
}

async function main() {
  const clients = {};
  for (const [type, [, queue]] of Object.entries(ROUTES)) {
    // celery-node routes every task of a client to the client's one queue: one client per queue
    clients[type] = celery.createClient(REDIS_URL, REDIS_URL, queue);
  }
  try {
    for (const message of messages()) {
      const events = Array.isArray(message) ? message : [message];
      const [taskName, queue] = ROUTES[events[0].type];
      const client = clients[events[0].type];
      const taskId = randomUUID();
      await client.isReady();
      // client.sendTask() builds this same message but drops the LPUSH's promise, so a caller
      // could disconnect (or exit) before its events are queued; publishing it ourselves lets us await it.
      const task = client.createTaskMessage(taskId, taskName, [message], {});
      await client.broker.publish(task.body, "", queue, signed(task), task.properties);
      for (const event of events) {
        process.stdout.write(JSON.stringify({ id: event.id, type: event.type, queue, task_id: taskId }) + "\n");
      }
    }
  } finally {
    await Promise.all(Object.values(clients).map((client) => client.disconnect()));
  }
}

main().catch((error) => {
  process.stderr.write(`emit.js: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
