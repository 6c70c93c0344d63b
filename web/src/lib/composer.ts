/**
 * The message box both pages share: the form's submit and Enter send (Shift+Enter adds a line; Enter while
 * an input method composes does not), and every edit reports typing.
 * @module
 */

/** Wires `form` and its `input`: `send` on submit or Enter, `typed` on every edit. */
export function wireComposer(form: HTMLElement, input: HTMLTextAreaElement, send: () => void, typed: () => void): void {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  input.addEventListener("input", typed);
}
