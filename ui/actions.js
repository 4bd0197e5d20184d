// ui/actions.js: action buttons. Each asks for confirmation, runs its
// call, says what happened, and is disabled on a read-only dashboard.

import { rpc, AuthError } from "./api.js";
import { h } from "./dom.js";
import { confirmAction } from "./confirm.js";

// spec: {action (data-action), label, title, text, ok, danger, input,
// call: async (value) => message}, after: called once the call is done.
export function actionButton(ctx, spec, after) {
  const btn = h("button", {
    type: "button",
    "data-action": spec.action,
    class: spec.danger ? "danger" : "",
  }, spec.label);
  btn.disabled = !ctx.writable;
  if (!ctx.writable) btn.title = "Read-only dashboard";
  btn.addEventListener("click", async () => {
    const answer = await confirmAction({
      title: spec.title,
      text: typeof spec.text === "function" ? spec.text() : spec.text,
      ok: spec.ok,
      danger: spec.danger,
      input: typeof spec.input === "function" ? spec.input() : spec.input,
    });
    if (answer === false || answer === null) return;
    btn.disabled = true;
    try {
      const message = await spec.call(answer);
      if (message) ctx.notify(message);
    } catch (e) {
      if (e instanceof AuthError) return ctx.authFailed();
      ctx.notify(`${spec.label}: ${e.message}`, "error");
    } finally {
      btn.disabled = !ctx.writable;
      if (after) after();
    }
  });
  return btn;
}

export { rpc };
