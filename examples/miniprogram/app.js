const auth = require('./auth');

App({
  onLaunch() {
    // Silent login: nothing to do here. The first call that needs the user
    // (auth.getUser() on the page) logs in once, and later launches reuse the stored
    // session until it ends.
    auth.onAuthChange((event) => {
      if (event.type === 'expired') console.info('wxauth: session ended (' + event.code + ')');
    });
  },
});
