/** Every HTTP operation of `RestClient` against the live server: its success case and an error status. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, OPERATION_IDS, http } from "@chatbox/client";

import { BASE_URL, Recorder, STRICT_URL, isDone, mintToken, newUser, rest, socket } from "./support.js";

/** Awaits `call` and returns the `ApiError` it rejects with. */
async function failure(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (e) {
    assert.ok(e instanceof ApiError, `an ApiError, not ${String(e)}`);
    return e;
  }
  assert.fail("the call succeeded");
}

/** A user with one answered turn; returns the user id, token and session id. */
async function userWithSession(): Promise<{ userId: string; token: string; sessionId: string }> {
  const userId = newUser();
  const token = mintToken(userId);
  const client = socket(token);
  const frames = new Recorder(client);
  try {
    const status = await client.connect();
    client.send({ type: "user_message", content: "Hi" });
    await frames.next(isDone, "the answer");
    return { userId, token, sessionId: status.session_id! };
  } finally {
    client.close();
  }
}

test("the client has one method per HTTP operation of the spec", () => {
  assert.equal(OPERATION_IDS.length, 22);
  const client = rest();
  for (const id of OPERATION_IDS) {
    assert.equal(typeof client[id], "function", id);
  }
});

test("admin file operations list a session's uploads and remove one; 403 and 404", async () => {
  const { token, sessionId } = await userWithSession();
  // The upload route is served beside the generated client (multipart): a plain fetch sends it.
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  const form = new FormData();
  form.append("file", new Blob([png]), "dot.png");
  const answer = await fetch(`${BASE_URL}/uploads`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    body: form,
  });
  assert.equal(answer.status, 201);
  const uploaded = (await answer.json()) as http.UploadedFile;
  assert.equal(uploaded.content_type, "image/png");
  const client = socket(token);
  const frames = new Recorder(client);
  try {
    await client.connect();
    client.send({ type: "file_upload", session_id: sessionId, file_id: uploaded.file_id });
    const shared = await frames.next((f) => f.type === "file_upload", "the file message");
    assert.equal(shared.type === "file_upload" && shared.file_url, `${new URL(BASE_URL).pathname}/uploads/${uploaded.file_id}`);
  } finally {
    client.close();
  }

  const admin = rest(mintToken(newUser("admin"), ["admin"], "Ada"));
  const list = await admin.adminListSessionFiles(sessionId);
  assert.equal(list.count, 1);
  assert.equal(list.files[0].file_id, uploaded.file_id);
  assert.equal(list.files[0].name, "dot.png");
  const forbidden = await failure(rest(token).adminListSessionFiles(sessionId));
  assert.equal(forbidden.status, 403);
  const missing = await failure(admin.adminDeleteSessionFile(sessionId, "0".repeat(32)));
  assert.equal(missing.status, 404);
  assert.equal(missing.message, "File not found");
  const removed = await admin.adminDeleteSessionFile(sessionId, uploaded.file_id);
  assert.equal(removed.status, "deleted");
  assert.equal((await admin.adminListSessionFiles(sessionId)).count, 0);
});

test("session operations: list, get, share, read shared, revoke, end; 401 and 404", async () => {
  const { userId, token, sessionId } = await userWithSession();
  const client = rest(token);

  const list = await client.listSessions();
  assert.equal(list.user_id, userId);
  assert.deepEqual(list.sessions.map((s) => s.id), [sessionId]);
  const badToken = await failure(rest("not-a-jwt").listSessions());
  assert.equal(badToken.status, 401);
  assert.equal(badToken.code, "INVALID_TOKEN");
  assert.ok(http.isHttpErrorCode(badToken.code));
  const noToken = await failure(rest(undefined).listSessions());
  assert.equal(noToken.status, 401);
  assert.equal(noToken.code, "UNAUTHORIZED");
  assert.equal(noToken.message, "Invalid authorization header");

  const detail = await client.getSession(sessionId);
  assert.equal(detail.session_id, sessionId);
  assert.equal(detail.messages.length, 2);
  const missing = await failure(client.getSession("no-such-session"));
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "NOT_FOUND");
  assert.equal(missing.message, "Session not found");
  const otherUser = await failure(rest(mintToken(newUser())).getSession(sessionId));
  assert.equal(otherUser.status, 404, "another user's session is reported as 404");

  const share = await client.shareSession(sessionId);
  assert.ok(share.share_token.length > 0);
  assert.equal((await failure(client.shareSession("no-such-session"))).status, 404);
  const shared = await rest().getSharedSession(share.share_token);
  assert.equal(shared.session_id, sessionId);
  assert.equal(shared.messages.length, 2);

  assert.equal((await client.revokeShare(sessionId)).status.length > 0, true);
  assert.equal((await failure(client.revokeShare("no-such-session"))).status, 404);
  const revoked = await failure(rest().getSharedSession(share.share_token));
  assert.equal(revoked.status, 404);
  assert.equal(revoked.code, "NOT_FOUND");

  const ended = await client.endSession(sessionId);
  assert.ok(ended.status.length > 0);
  assert.equal((await failure(client.endSession("no-such-session"))).status, 404);
  assert.ok((await client.getSession(sessionId)).end_time, "the session has ended");
});

test("admin operations succeed for an admin and answer 403 to a user", async () => {
  const { userId, token: userToken, sessionId } = await userWithSession();
  const adminId = newUser("admin");
  const admin = rest(mintToken(adminId, ["admin"], "Ada"));
  const otherAdmin = rest(mintToken(newUser("admin"), ["chat_admin"], "Bob"));
  const user = rest(userToken);
  const forbidden = async (call: Promise<unknown>) => {
    const e = await failure(call);
    assert.equal(e.status, 403);
    assert.equal(e.code, "FORBIDDEN");
    assert.equal(e.message, "Insufficient permissions");
  };

  const sessions = await admin.adminListSessions({ user_id: userId, limit: "10" });
  assert.deepEqual(sessions.sessions.map((s) => s.id), [sessionId]);
  await forbidden(user.adminListSessions());
  const badQuery = await failure(admin.adminListSessions({ sort_order: "sideways" }));
  assert.equal(badQuery.status, 400);
  assert.equal(badQuery.code, "BAD_REQUEST");
  assert.equal(badQuery.message, 'invalid sort_order "sideways"; allowed: asc, desc');

  const metrics = await admin.adminGetMetrics();
  assert.equal(typeof metrics, "object");
  await forbidden(user.adminGetMetrics());

  const taken = await admin.adminTakeover(sessionId);
  assert.equal(taken.session_id, sessionId);
  assert.equal(taken.admin_id, adminId);
  await forbidden(user.adminTakeover(sessionId));
  assert.equal((await failure(otherAdmin.adminTakeover(sessionId))).status, 400, "already assisted");

  const transferred = await otherAdmin.adminTransferTakeover(sessionId);
  assert.equal(transferred.session_id, sessionId);
  await forbidden(user.adminTransferTakeover(sessionId));

  // The assisting admin hands the session on; another admin cannot.
  const handed = await otherAdmin.adminTransferTakeover(sessionId, { to_admin_id: adminId, to_admin_name: "Ada" });
  assert.equal(handed.admin_id, adminId);
  const refused = await failure(otherAdmin.adminTransferTakeover(sessionId, { to_admin_id: "night" }));
  assert.equal(refused.status, 400, "only the assisting admin hands a session on");

  const released = await admin.adminEndTakeover(sessionId);
  assert.equal(released.session_id, sessionId);
  await forbidden(user.adminEndTakeover(sessionId));

  const viewed = await admin.adminGetSession(sessionId);
  assert.equal(viewed.session_id, sessionId);
  assert.ok(viewed.messages.length >= 2);
  await forbidden(user.adminGetSession(sessionId));

  const audit = await admin.adminListAudit({ limit: 50 });
  assert.ok(audit.entries.length > 0);
  await forbidden(user.adminListAudit());

  const userSessions = await admin.adminListUserSessions(userId);
  assert.deepEqual(userSessions.sessions.map((s) => s.id), [sessionId]);
  await forbidden(user.adminListUserSessions(userId));

  const exported = await admin.adminExportUser(userId);
  assert.equal(exported.user_id, userId);
  await forbidden(user.adminExportUser(userId));

  await forbidden(user.adminEndSession(sessionId));
  assert.equal((await admin.adminEndSession(sessionId)).status, "ended");
  assert.ok((await admin.adminGetSession(sessionId)).end_time !== undefined);

  await forbidden(user.adminDeleteUser(userId));
  const deleted = await admin.adminDeleteUser(userId);
  assert.equal(deleted.user_id, userId);
  assert.equal(deleted.sessions_deleted, 1);
});

test("public operations: health, readiness and metrics; 429 and 403 on a strict server", async () => {
  const open = rest(undefined, BASE_URL);
  assert.equal((await open.getHealth()).status.length > 0, true);
  assert.equal((await open.getReadiness()).status, "ready");
  assert.match(await open.getPrometheusMetrics(), /^# (HELP|TYPE) /m);

  // The strict server allows 2 public requests per minute per IP and reads metrics only from 10.0.0.0/8.
  const strict = rest(undefined, STRICT_URL);
  const closed = await failure(strict.getPrometheusMetrics());
  assert.equal(closed.status, 403);
  assert.equal(closed.code, "FORBIDDEN");
  const errors: ApiError[] = [];
  for (let i = 0; i < 3; i++) {
    try {
      await strict.getHealth();
    } catch (e) {
      assert.ok(e instanceof ApiError);
      errors.push(e);
    }
  }
  const limited = errors.find((e) => e.status === 429);
  assert.ok(limited, "getHealth is rate limited");
  assert.equal(limited.code, "rate_limit_exceeded");
  assert.ok((limited.retryAfterMs ?? 0) >= 1000, "Retry-After read");
  const readiness = await failure(strict.getReadiness());
  assert.equal(readiness.status, 429);
});
