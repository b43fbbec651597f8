// The settings dialog: one <dialog>, a section per concern. Each section's
// owner fills it and keeps it up to date (notify.js: notifications); this
// module opens the dialog from the sidebar's gear and, as it opens, asks every
// section to show its state as it is now (a permission may have changed in
// the browser's own settings meanwhile). Closing (Done, Escape, the backdrop)
// is the common dialog handling in dialogs.js.

import { $ } from './dom.js';

const renderers = [];

/** A section that shows its current state with `render()` whenever the dialog opens. */
export function addSettingsSection(render) {
  renderers.push(render);
}

export function setupSettings() {
  $('settings-btn').addEventListener('click', () => {
    for (const render of renderers) render();
    $('settings-dialog').showModal();
  });
}
