// Renders /asyncapi.json (AsyncAPI 3.0.0) as readable HTML. Vanilla JS, no network but
// this hub; every string from the document goes in through textContent, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  // "#/a/b~1c" -> the value at that JSON pointer in doc.
  function resolve(doc, ref) {
    if (typeof ref !== "string" || !ref.startsWith("#/")) return undefined;
    let value = doc;
    for (const raw of ref.slice(2).split("/")) {
      const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
      if (value === null || typeof value !== "object" || !(part in value)) return undefined;
      value = value[part];
    }
    return value;
  }

  // Prose with `code` spans (CommonMark's backticks, the only markup the document uses
  // in summaries), built as text and <code> nodes.
  function prose(text) {
    const span = el("span", {});
    String(text || "").replace(/\*\*/g, "").split("`").forEach((part, i) => {
      span.append(i % 2 ? el("code", {}, part) : part);
    });
    return span;
  }

  const modelName = (ref) => ref.split("/").pop();
  const anchor = (prefix, name) => prefix + "-" + name.replace(/[^\w.-]/g, "_");

  // A short, readable type for a JSON Schema: "integer ≥ 0", "array of string", "Order"...
  function typeOf(schema) {
    if (!schema || typeof schema !== "object") return el("span", { class: "muted" }, "any");
    if (schema.$ref) {
      const name = modelName(schema.$ref);
      return el("a", { href: "#" + anchor("model", name), class: "mono" }, name);
    }
    if ("const" in schema) return el("code", {}, JSON.stringify(schema.const));
    if (Array.isArray(schema.enum)) {
      return el("code", {}, schema.enum.map((v) => JSON.stringify(v)).join(" | "));
    }
    const alternatives = schema.oneOf || schema.anyOf;
    if (Array.isArray(alternatives)) {
      const span = el("span", {});
      alternatives.forEach((alt, i) => {
        if (i) span.append(" | ");
        span.append(typeOf(alt));
      });
      return span;
    }
    let text = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
    if (text === "array" && schema.items) {
      const span = el("span", {}, "array of ");
      span.append(typeOf(schema.items));
      return span;
    }
    const bounds = [];
    if ("minimum" in schema) bounds.push("≥ " + schema.minimum);
    if ("maximum" in schema) bounds.push("≤ " + schema.maximum);
    if ("maxLength" in schema) {
      bounds.push((schema.minLength || 0) + "–" + schema.maxLength + " chars");
    } else if ("minLength" in schema) {
      bounds.push("≥ " + schema.minLength + " chars");
    }
    if (bounds.length) text += " " + bounds.join(", ");
    return el("span", { class: "mono" }, text);
  }

  function fieldsTable(schema, skip) {
    const props = (schema && schema.properties) || {};
    const required = new Set((schema && schema.required) || []);
    const names = Object.keys(props).filter((name) => !skip.has(name));
    if (!names.length) return el("p", { class: "muted" }, "no fields");
    const body = el("tbody", {});
    for (const name of names) {
      const prop = props[name] || {};
      body.append(
        el("tr", { "data-field": name },
          el("td", {}, el("code", {}, name)),
          el("td", {}, typeOf(prop)),
          el("td", {}, required.has(name) ? el("span", { class: "req" }, "required") : ""),
          el("td", {}, prose(prop.description || prop.title || "")))
      );
    }
    return el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, ""),
        el("th", {}, "description"))),
      body);
  }

  function frameCard(doc, key, message, operation) {
    const tags = (message.tags || []).map((t) => el("span", { class: "tag" }, t.name));
    const card = el("article", { class: "frame", id: anchor("message", key), "data-frame": message.name },
      el("h3", {}, message.title || message.name || key, ...tags),
      message.summary ? el("p", {}, prose(message.summary)) : null);
    const payload = message.payload || {};
    if (message.contentType && message.contentType !== "application/json") {
      card.append(el("p", { class: "muted" }, "Binary frame (" + message.contentType + ")."));
    } else {
      card.append(fieldsTable(payload, new Set(["type"])));
    }
    const reply = operation && operation.reply;
    if (reply && Array.isArray(reply.messages) && reply.messages.length) {
      const p = el("p", { class: "muted" }, "Reply: ");
      reply.messages.forEach((ref, i) => {
        const replyKey = ref.$ref.split("/").pop().replace(/~1/g, "/").replace(/~0/g, "~");
        const replied = resolve(doc, ref.$ref) || {};
        if (i) p.append(", ");
        p.append(el("a", { href: "#" + anchor("message", replyKey), class: "mono" },
          replied.title || replied.name || replyKey));
      });
      card.append(p);
    }
    return card;
  }

  function render(doc) {
    const info = doc.info || {};
    $("title").textContent = (info.title || "wirehub") + " WebSocket API";
    $("version").textContent = "v" + (info.version || "?") + " · AsyncAPI " + doc.asyncapi;
    for (const para of (info.description || "").split(/\n\n+/)) {
      $("description").append(el("p", {}, prose(para)));
    }
    const servers = $("servers");
    for (const [name, server] of Object.entries(doc.servers || {})) {
      const channel = Object.values(doc.channels || {})[0] || {};
      const url = server.protocol + "://" + server.host + (channel.address || "");
      const security = (server.security || []).map((ref) => resolve(doc, ref.$ref) || {});
      servers.append(el("p", {}, el("b", {}, name + ": "), el("code", {}, url),
        security.length ? " — auth: " + security.map((s) => s.description || s.type).join(" or ")
          : " — no authentication"));
    }
    const channel = Object.values(doc.channels || {})[0] || { messages: {} };
    const byMessage = {};
    for (const operation of Object.values(doc.operations || {})) {
      for (const ref of operation.messages || []) byMessage[ref.$ref] = operation;
    }
    for (const [key, message] of Object.entries(channel.messages || {})) {
      const ref = "#/channels/" + Object.keys(doc.channels)[0] + "/messages/" +
        key.replace(/~/g, "~0").replace(/\//g, "~1");
      const operation = byMessage[ref];
      const target = operation && operation.action === "receive" ? "client-frames" : "server-frames";
      $(target).append(frameCard(doc, key, message, operation));
    }
    const models = Object.entries((doc.components || {}).schemas || {});
    if (!models.length) $("models").append(el("p", { class: "muted" }, "No typed handlers or rooms."));
    for (const [name, schema] of models) {
      $("models").append(el("article", { class: "frame", id: anchor("model", name), "data-model": name },
        el("h3", {}, name),
        schema.description ? el("p", {}, prose(schema.description)) : null,
        fieldsTable(schema, new Set())));
    }
    document.body.dataset.rendered = "true";
  }

  fetch("asyncapi.json")
    .then((response) => {
      if (!response.ok) throw new Error("GET /asyncapi.json: HTTP " + response.status);
      return response.json();
    })
    .then(render)
    .catch((error) => {
      $("error").hidden = false;
      $("error").textContent = String(error);
    });
})();
