// pm2 process file for operators who run ByteLeap without containers or systemd.
//   pm2 start scripts/pm2/ecosystem.config.js --only byteleap-validator
//   pm2 start scripts/pm2/ecosystem.config.js --only byteleap-miner
//   pm2 start scripts/pm2/ecosystem.config.js --only byteleap-worker
// Each app reads its YAML from BYTELEAP_CONFIG; BYTELEAP_HOME is where the virtualenv lives
// (python -m venv $BYTELEAP_HOME/venv && $BYTELEAP_HOME/venv/bin/pip install '.[validator]').
const home = process.env.BYTELEAP_HOME || `${process.env.HOME}/byteleap`;
const configs = process.env.BYTELEAP_CONFIG_DIR || "/etc/byteleap";

function app(role) {
  return {
    name: `byteleap-${role}`,
    script: `${home}/venv/bin/byteleap-${role}`,
    args: ["run"],
    interpreter: "none",
    env: {
      BYTELEAP_CONFIG: `${configs}/${role}.yaml`,
      BYTELEAP_LOGGING__FORMAT: "json",
    },
    autorestart: true,
    // 2: invalid configuration, 3: hotkey not registered; restarting does not fix either
    stop_exit_codes: [2, 3],
    restart_delay: 5000,
    kill_timeout: 30000,
    max_restarts: 50,
    merge_logs: true,
    time: true,
  };
}

module.exports = {
  apps: [app("validator"), app("miner"), app("worker")],
};
