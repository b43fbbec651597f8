// The sign-in screen: log in, sign up (then log straight in), field-level
// errors from the server's {"error","code"} answers.

import { api } from '../api.js';
import { $ } from './dom.js';

const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;

/**
 * Show the screen; resolves with the login response once the user is in.
 * @param {string} [notice] why the user is here (e.g. an expired session)
 * @param {string} [invite] an invite code from an invite link: the sign-up form opens with it
 */
export function showAuth(notice, invite) {
  const screen = $('auth-screen');
  screen.hidden = false;
  const noticeEl = $('auth-notice');
  noticeEl.hidden = !notice;
  noticeEl.textContent = notice || '';
  selectTab(invite || document.querySelector('[role=tab][aria-selected=true]')?.id === 'tab-signup' ? 'signup' : 'login');
  if (invite) $('signup-invite').value = invite;
  // How this server takes new accounts: the invite field shows when one is needed.
  api
    .server()
    .then(({ signup }) => {
      $('signup-invite-field').hidden = signup !== 'invite' && !invite;
      $('signup-closed').hidden = signup !== 'closed';
    })
    .catch(() => {});

  return new Promise((resolve) => {
    const loginForm = $('login-form');
    const signupForm = $('signup-form');
    const done = (res) => {
      loginForm.onsubmit = signupForm.onsubmit = null;
      screen.hidden = true;
      resolve(res);
    };

    loginForm.onsubmit = (ev) =>
      submit(ev, loginForm, () => {
        const username = loginForm.username.value.trim();
        const password = loginForm.password.value;
        const errors = {};
        if (!username) errors.username = 'Enter your username.';
        if (!password) errors.password = 'Enter your password.';
        return [errors, () => api.login(username, password)];
      }).then((res) => res && done(res));

    signupForm.onsubmit = (ev) =>
      submit(ev, signupForm, () => {
        const username = signupForm.username.value.trim();
        const email = signupForm.email.value.trim();
        const password = signupForm.password.value;
        const invite = signupForm.invite.value.trim();
        const errors = {};
        if (!USERNAME.test(username)) errors.username = 'Use 3–32 letters, digits, dots, dashes or underscores.';
        if (email && email.split('@').length !== 2) errors.email = 'Enter an email address like name@example.com, or leave it empty.';
        if (password.length < 8 || password.length > 128) errors.password = 'Use 8 to 128 characters.';
        return [errors, async () => {
          await api.signup(username, email, password, invite);
          return api.login(username, password);
        }];
      }).then((res) => res && done(res));
  });
}

/** Validate locally, then call the server; show every error next to its field. */
async function submit(ev, form, prepare) {
  ev.preventDefault();
  clearErrors(form);
  const [errors, call] = prepare();
  if (Object.keys(errors).length) {
    showErrors(form, errors);
    return null;
  }
  const button = form.querySelector('[type=submit]');
  button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await call();
  } catch (err) {
    showErrors(form, { [fieldFor(form, err)]: err.message });
    return null;
  } finally {
    button.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

/** Which field a server error belongs to: the server names it in its sentence. */
function fieldFor(form, err) {
  if (err.code === 'invalid_credentials') return 'password';
  if (err.code === 'invite_required' || err.code === 'invalid_invite') {
    $('signup-invite-field').hidden = false;
    return 'invite';
  }
  const text = err.message.toLowerCase();
  for (const name of ['username', 'email', 'password']) {
    if (form.elements[name] && text.includes(name)) return name;
  }
  return err.code === 'taken' ? 'username' : '';
}

function showErrors(form, errors) {
  let first = null;
  for (const [name, message] of Object.entries(errors)) {
    const input = form.elements[name];
    const target = input ? $(`${input.id}-error`) : form.querySelector('.form-error');
    // Server sentences may start lower-case; shown on their own they read better capitalised.
    target.textContent = message.charAt(0).toUpperCase() + message.slice(1);
    if (input) input.setAttribute('aria-invalid', 'true');
    first ||= input || null;
  }
  first?.focus();
}

function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

function selectTab(which) {
  for (const name of ['login', 'signup']) {
    const tab = $(`tab-${name}`);
    const on = name === which;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`${name}-form`).hidden = !on;
  }
}

// Tabs: click or arrow keys, per the WAI-ARIA tabs pattern.
for (const name of ['login', 'signup']) {
  const tab = $(`tab-${name}`);
  tab.addEventListener('click', () => {
    selectTab(name);
    $(`${name}-form`).querySelector('input').focus();
  });
  tab.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    const other = name === 'login' ? 'signup' : 'login';
    selectTab(other);
    $(`tab-${other}`).focus();
  });
}
