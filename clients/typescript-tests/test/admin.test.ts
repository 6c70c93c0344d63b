/** An administrator's client taking a session over: join, talk to the user, relay, leave. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { Recorder, isDone, mintToken, newUser, rest, socket } from "./support.js";

test("an admin client takes a session over, talks to the user and hands it back", async () => {
  const userToken = mintToken(newUser());
  const adminId = newUser("admin");
  const adminToken = mintToken(adminId, ["admin"], "Ada");
  const user = socket(userToken);
  const admin = socket(adminToken);
  const onUser = new Recorder(user);
  const onAdmin = new Recorder(admin);
  try {
    const status = await user.connect();
    const sessionId = status.session_id!;
    user.send({ type: "user_message", content: "I need a human" });
    await onUser.next(isDone, "the AI answer");
    await admin.connect();

    admin.send({ type: "admin_join", session_id: sessionId, sender: "admin" });
    const joined = await onUser.next((f) => f.type === "admin_join", "admin_join on the user's device");
    assert.equal(joined.type === "admin_join" && joined.session_id, sessionId);
    await onAdmin.next((f) => f.type === "admin_join", "admin_join on the admin's device");
    assert.equal(admin.sessionId, sessionId, "the admin client adopted the session it joined");

    const id = admin.send({ type: "admin_message", session_id: sessionId, sender: "admin", content: "Hello, I am Ada" });
    const said = await onUser.next((f) => f.type === "admin_message", "admin_message on the user's device");
    assert.equal(said.type === "admin_message" && said.content, "Hello, I am Ada");
    assert.equal(said.type === "admin_message" && said.client_msg_id, id);

    const answersBefore = onUser.of("ai_response").length;
    user.send({ type: "user_message", content: "Thanks Ada" });
    const relayed = await onAdmin.next(
      (f) => f.type === "user_message" && f.content === "Thanks Ada",
      "the user's message relayed to the admin",
    );
    assert.equal(relayed.type === "user_message" && relayed.session_id, sessionId);

    const released = await rest(adminToken).adminEndTakeover(sessionId);
    assert.equal(released.admin_id, adminId);
    await onUser.next((f) => f.type === "admin_leave", "admin_leave on the user's device");
    assert.equal(onUser.of("ai_response").length, answersBefore, "no AI turn while the admin assisted");
  } finally {
    user.close();
    admin.close();
  }
});
