/**
 * The sign-in step both pages share: a token from the URL fragment or from this tab's storage is tried
 * first; otherwise (or when the server refuses it) a form asks for one to be pasted, saying why the last one
 * did not work.
 * @module
 */

import { ApiError } from "@chatbox/client";
import { byId, h, replace } from "./dom.js";
import { inspect, takeFragmentToken, type Claims, type TokenStore } from "./session-token.js";

/** A signed-in caller. */
export interface SignedIn {
  token: string;
  claims: Claims;
}

/** What the server said about a token, in words for the person at the keyboard. */
export function refusal(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 401) return `The server refused this token (${error.message}). It may have expired or been signed with another secret.`;
    if (error.status === 403) return `This token is valid but not allowed here (${error.message}).`;
    if (error.status === 0) return "The server cannot be reached. Check the connection and try again.";
    return `The server answered ${error.status}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Resolves once a token is accepted by `check` (which calls the server and throws when it refuses). Shows
 * the form in `#signin` while there is no usable token; hides it afterwards.
 */
export async function signIn(store: TokenStore, check: (token: string, claims: Claims) => Promise<void>): Promise<SignedIn> {
  const panel = byId("signin");
  const fromUrl = takeFragmentToken();
  if (fromUrl) store.set(fromUrl);
  let problem: string | null = store.takeProblem();
  const candidate = store.get();
  if (candidate) {
    const result = await attempt(candidate, check);
    if (result.ok) {
      panel.hidden = true;
      return result.signedIn;
    }
    store.clear();
    problem = result.problem;
  }
  return new Promise((resolve) => {
    const message = h("p", { id: "signin-problem", class: "problem", role: "alert" }, problem ?? "");
    message.hidden = problem === null;
    const input = h("textarea", { id: "signin-token", rows: 4, required: true, autocomplete: "off", spellcheck: "false" });
    const button = h("button", { type: "submit" }, "Sign in");
    const form = h(
      "form",
      { class: "signin-form" },
      h("h2", {}, "Sign in"),
      h("label", { for: "signin-token" }, "Paste your access token (JWT)"),
      input,
      message,
      button,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      button.disabled = true;
      void attempt(input.value, check).then((result) => {
        button.disabled = false;
        if (result.ok) {
          store.set(result.signedIn.token);
          panel.hidden = true;
          resolve(result.signedIn);
        } else {
          replace(message, result.problem);
          message.hidden = false;
          input.focus();
        }
      });
    });
    replace(panel, form);
    panel.hidden = false;
    input.focus();
  });
}

async function attempt(
  raw: string,
  check: (token: string, claims: Claims) => Promise<void>,
): Promise<{ ok: true; signedIn: SignedIn } | { ok: false; problem: string }> {
  const inspected = inspect(raw);
  if (!inspected.ok) return inspected;
  try {
    await check(inspected.token, inspected.claims);
  } catch (error) {
    return { ok: false, problem: refusal(error) };
  }
  return { ok: true, signedIn: { token: inspected.token, claims: inspected.claims } };
}

/** Shows the page (`#app`) with the caller's name and a Sign out button that calls `closing`, forgets the token and reloads. */
export function showSignedIn(me: SignedIn, store: TokenStore, closing: () => void): void {
  byId("app").hidden = false;
  replace(byId("whoami"), me.claims.name ?? me.claims.user_id ?? "");
  const signout = byId<HTMLButtonElement>("signout");
  signout.hidden = false;
  signout.addEventListener("click", () => {
    closing();
    store.clear();
    location.reload();
  });
}
