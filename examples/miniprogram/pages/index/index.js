const auth = require('../../auth');
const config = require('../../config');

function describe(err) {
  return err && err.code ? err.code + ': ' + err.message : String(err);
}

// Handlers return their promise: WeChat ignores it, and the example's test waits on it.
Page({
  data: {
    loading: true,
    user: null,
    avatarSrc: '',
    error: '',
    devMode: !!config.devUser,
  },

  onLoad() {
    this.stopListening = auth.onAuthChange((event) => {
      if (event.type === 'logout') this.show(null);
    });
    return this.load();
  },

  onUnload() {
    this.stopListening();
  },

  // Logs in if there is no session yet (one wx.login, however many calls wait).
  load() {
    this.setData({ loading: true, error: '' });
    return auth
      .getUser()
      .then((user) => this.show(user))
      .catch((err) => this.setData({ loading: false, error: describe(err) }));
  },

  show(user) {
    this.setData({
      loading: false,
      user: user,
      avatarSrc: user && user.avatar_url ? auth.resolveUrl(user.avatar_url) : '',
    });
  },

  run(promise) {
    this.setData({ error: '' });
    return promise
      .then((user) => this.show(user))
      .catch((err) => this.setData({ error: describe(err) }));
  },

  onChooseAvatar(e) {
    return this.run(auth.uploadAvatar(e.detail.avatarUrl));
  },

  // <input type="nickname"> fills in the WeChat nickname only through a form submit.
  onSaveNickname(e) {
    const nickname = (e.detail.value.nickname || '').trim();
    if (!nickname) {
      this.setData({ error: 'type or choose a nickname first' });
      return;
    }
    return this.run(auth.updateProfile({ nickname: nickname }));
  },

  onGetPhoneNumber(e) {
    if (!e.detail.code) {
      // Declined, or an AppID without the phone number capability.
      this.setData({ error: 'no phone code: ' + e.detail.errMsg });
      return;
    }
    return this.run(auth.bindPhone(e.detail.code).then(() => auth.getUser()));
  },

  // The dev server's fake WeChat accepts any phone code.
  onFakePhone() {
    return this.run(auth.bindPhone('dev-phone-' + Date.now()).then(() => auth.getUser()));
  },

  onLogin() {
    return this.load();
  },

  onLogout() {
    return auth.logout().catch((err) => this.setData({ error: describe(err) }));
  },
});
