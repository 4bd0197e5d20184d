// ui/confirm.js: the one confirmation dialog (dialog[data-testid=confirm]
// in index.html). A modal <dialog> keeps focus inside; Escape cancels;
// focus goes back to the button that opened it.

import { h } from "./dom.js";

const dialog = () => document.getElementById("confirm");

// Asks; resolves to true (OK) or false (Cancel, Escape). opts: title,
// text, ok (the OK button's label), danger (bool), input ({label, value,
// min}: a number field; the promise then resolves to its value or null).
export function confirmAction(opts) {
  const dlg = dialog();
  const okBtn = document.getElementById("confirm-ok");
  const cancelBtn = document.getElementById("confirm-cancel");
  const form = dlg.querySelector("form");
  const extra = document.getElementById("confirm-extra");
  const opener = document.activeElement;
  let input = null;

  document.getElementById("confirm-title").textContent = opts.title;
  document.getElementById("confirm-text").textContent = opts.text || "";
  okBtn.textContent = opts.ok || "OK";
  okBtn.classList.toggle("danger", !!opts.danger);
  extra.replaceChildren();
  if (opts.input) {
    input = h("input", {
      type: "number",
      id: "confirm-input",
      name: "value",
      min: opts.input.min ?? 0,
      step: 1,
      required: true,
      value: opts.input.value ?? "",
    });
    extra.append(h("label", { for: "confirm-input" }, opts.input.label), input);
  }

  return new Promise((resolve) => {
    const finish = (ok) => {
      okBtn.removeEventListener("click", onOk);
      cancelBtn.removeEventListener("click", onCancel);
      form.removeEventListener("submit", onSubmit);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      if (opener && typeof opener.focus === "function" && opener.isConnected)
        opener.focus();
      if (!input) resolve(ok);
      else resolve(ok ? Number(input.value) : null);
    };
    const onOk = () => {
      if (input && !input.reportValidity()) return;
      finish(true);
    };
    const onCancel = (e) => {
      if (e) e.preventDefault();
      finish(false);
    };
    const onSubmit = (e) => {
      e.preventDefault();
      onOk();
    };
    okBtn.addEventListener("click", onOk);
    cancelBtn.addEventListener("click", onCancel);
    form.addEventListener("submit", onSubmit);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    // The safe choice has focus, or the field to fill in.
    (input || cancelBtn).focus();
  });
}
