// The settings dialog's profile picture: the current one (or the initial),
// and "Choose a picture…", which uploads it at once (PUT /api/me/avatar). The
// server crops the middle square and makes the sizes; everyone sees the new
// one from their next list of people (this tab at once).

import { $, setAvatar, setText } from './dom.js';
import { addSettingsSection } from './settings.js';
import { upload, setAvatarUrls } from '../files.js';

export function setupProfile(chat) {
  const button = $('avatar-btn');
  const picker = $('avatar-input');
  const render = () => setAvatar($('settings-avatar'), chat.me);
  addSettingsSection(render);
  button.addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    const file = picker.files[0];
    picker.value = '';
    if (!file) return;
    button.disabled = true;
    setText($('avatar-state'), 'Uploading…');
    upload(file, (f) => setText($('avatar-state'), `Uploading… ${Math.round(f * 100)}%`), true)
      .promise.then(
        (body) => {
          setAvatarUrls([{ username: chat.me, avatar: body.avatar }]);
          setText($('avatar-state'), 'Saved.');
          render();
          chat.changed();
        },
        (err) => setText($('avatar-state'), err.message),
      )
      .finally(() => {
        button.disabled = false;
        button.focus();
      });
  });
}
