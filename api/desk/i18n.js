// Every text the desk shows, Vietnamese first, English second; and times in Mekong Delta local time.

export const LANGS = ["vi", "en"];
export const TIME_ZONE = "Asia/Ho_Chi_Minh";

/** The one table of UI strings: key → {vi, en}. `{name}` marks a value filled in by `t()`. */
export const STRINGS = {
  title: { vi: "Bàn trực cảnh báo", en: "Alert desk" },
  subtitle: { vi: "Trung tâm điều hành Đồng bằng sông Cửu Long", en: "Mekong Delta operations centre" },
  lang_toggle: { vi: "English", en: "Tiếng Việt" },
  logout: { vi: "Quên khóa", en: "Forget key" },
  skip_nav: { vi: "Các khu vực", en: "Sections" },
  go_map: { vi: "Bản đồ", en: "Map" },
  go_alerts: { vi: "Cảnh báo", en: "Alerts" },
  go_station: { vi: "Trạm", en: "Station" },
  key_title: { vi: "Nhập khóa API", en: "Enter an API key" },
  key_help: {
    vi: "Khóa chỉ được giữ trong phiên trình duyệt này. Cần khóa “operate” để xác nhận cảnh báo.",
    en: "The key is kept for this browser session only. Acknowledging alerts needs an “operate” key.",
  },
  key_label: { vi: "Khóa API", en: "API key" },
  key_submit: { vi: "Đăng nhập", en: "Sign in" },
  key_rejected: { vi: "Khóa bị từ chối: {reason}", en: "Key refused: {reason}" },
  key_unreachable: { vi: "Không kết nối được API: {reason}", en: "Cannot reach the API: {reason}" },
  live_connecting: { vi: "Đang kết nối…", en: "Connecting…" },
  live_open: { vi: "Trực tuyến", en: "Live" },
  live_closed: { vi: "Mất kết nối — thử lại sau {s} giây", en: "Disconnected — retrying in {s} s" },
  live_closed_plain: { vi: "Mất kết nối", en: "Disconnected" },
  map_title: { vi: "Bản đồ trạm", en: "Station map" },
  map_label: { vi: "Bản đồ {n} trạm, tô màu theo cảnh báo nặng nhất", en: "Map of {n} stations, coloured by worst alert" },
  legend: { vi: "Chú giải", en: "Legend" },
  offline: { vi: "Mất kết nối", en: "Offline" },
  online: { vi: "Đang hoạt động", en: "Online" },
  unknown: { vi: "Chưa từng báo về", en: "Never heard from" },
  offline_legend: { vi: "Mất kết nối hoặc chưa từng báo về", en: "Offline or never heard from" },
  no_alert: { vi: "Bình thường", en: "No alert" },
  sev_info: { vi: "Thông tin", en: "Info" },
  sev_warning: { vi: "Cảnh báo", en: "Warning" },
  sev_critical: { vi: "Khẩn cấp", en: "Critical" },
  alerts_title: { vi: "Cảnh báo đang hoạt động", en: "Active alerts" },
  alerts_of_total: { vi: "(trong tổng số {total})", en: "(of {total})" },
  alerts_none: { vi: "Không có cảnh báo nào khớp bộ lọc.", en: "No alert matches the filters." },
  filters: { vi: "Bộ lọc", en: "Filters" },
  filter_province: { vi: "Tỉnh", en: "Province" },
  filter_kind: { vi: "Loại thiết bị", en: "Device kind" },
  filter_severity: { vi: "Mức tối thiểu", en: "Minimum severity" },
  any: { vi: "Tất cả", en: "All" },
  ack: { vi: "Xác nhận", en: "Acknowledge" },
  ack_by: { vi: "Đã xác nhận bởi {who} lúc {at}", en: "Acknowledged by {who} at {at}" },
  ack_needs_operate: { vi: "Cần khóa có quyền operate", en: "Needs an operate key" },
  ack_failed: { vi: "Không xác nhận được: {reason}", en: "Could not acknowledge: {reason}" },
  open_station: { vi: "Xem trạm {id}", en: "Open station {id}" },
  fired_at: { vi: "Phát lúc {at}", en: "Fired at {at}" },
  resolved_at: { vi: "Đã kết thúc lúc {at}", en: "Resolved at {at}" },
  new_alert: { vi: "Cảnh báo mới, {sev}: {place}. {msg}", en: "New alert, {sev}: {place}. {msg}" },
  station_title: { vi: "Trạm", en: "Station" },
  station_pick: { vi: "Chọn một trạm trên bản đồ hoặc trong danh sách cảnh báo.", en: "Choose a station on the map or in the alert list." },
  station_close: { vi: "Đóng", en: "Close" },
  status: { vi: "Trạng thái", en: "Status" },
  worst: { vi: "Cảnh báo nặng nhất", en: "Worst alert" },
  battery: { vi: "Pin", en: "Battery" },
  last_seen: { vi: "Lần cuối", en: "Last seen" },
  kind: { vi: "Loại", en: "Kind" },
  site: { vi: "Địa điểm", en: "Site" },
  crop: { vi: "Cây trồng / vật nuôi", en: "Crop" },
  latest_title: { vi: "Số đo mới nhất", en: "Latest readings" },
  latest_field: { vi: "Chỉ số", en: "Field" },
  latest_value: { vi: "Giá trị", en: "Value" },
  latest_none: { vi: "Chưa có số đo trong 7 ngày qua.", en: "No reading in the last 7 days." },
  latest_at: { vi: "Đo lúc {at}", en: "Measured at {at}" },
  charts_title: { vi: "72 giờ qua", en: "Last 72 hours" },
  chart_label: { vi: "{field} ({unit}), 72 giờ qua: {n} điểm", en: "{field} ({unit}), last 72 hours: {n} points" },
  chart_alerts: { vi: "{n} cảnh báo được tô trên biểu đồ", en: "{n} alerts shaded on the chart" },
  span_firing: { vi: "từ {from}, vẫn đang hoạt động", en: "from {from}, still firing" },
  span_resolved: { vi: "từ {from} đến {to}", en: "from {from} to {to}" },
  on_chart: { vi: "Tô trên biểu đồ “{field}”", en: "Shaded on the “{field}” chart" },
  chart_empty: { vi: "Không có dữ liệu", en: "No data" },
  chart_error: { vi: "Không tải được biểu đồ: {reason}", en: "Could not load the chart: {reason}" },
  threshold: { vi: "Ngưỡng “{rule}”: {op} {value} ({sev})", en: "Threshold “{rule}”: {op} {value} ({sev})" },
  station_alerts_title: { vi: "Lịch sử cảnh báo", en: "Alert history" },
  station_alerts_none: { vi: "Chưa có cảnh báo nào.", en: "No alert yet." },
  state_firing: { vi: "Đang hoạt động", en: "Active" },
  state_resolved: { vi: "Đã kết thúc", en: "Resolved" },
  camera_title: { vi: "Sự kiện camera (72 giờ)", en: "Camera events (72 h)" },
  camera_none: { vi: "Không có sự kiện nào.", en: "No event." },
  confidence: { vi: "độ tin cậy {p}%", en: "confidence {p}%" },
  load_error: { vi: "Lỗi tải dữ liệu: {reason}", en: "Could not load: {reason}" },
};

/** Kinds, sites, crops, camera event classes and telemetry fields, by their API names. */
export const NAMES = {
  water_quality: { vi: "Chất lượng nước", en: "Water quality" },
  salinity: { vi: "Độ mặn", en: "Salinity" },
  light_trap: { vi: "Bẫy đèn", en: "Light trap" },
  camera: { vi: "Camera", en: "Camera" },
  river: { vi: "Sông", en: "River" },
  canal: { vi: "Kênh", en: "Canal" },
  pond: { vi: "Ao nuôi", en: "Pond" },
  field: { vi: "Cánh đồng", en: "Field" },
  sluice: { vi: "Cống", en: "Sluice" },
  kitchen: { vi: "Bếp ăn", en: "Kitchen" },
  road: { vi: "Đường", en: "Road" },
  market: { vi: "Chợ", en: "Market" },
  school: { vi: "Trường học", en: "School" },
  rice: { vi: "Lúa", en: "Rice" },
  durian: { vi: "Sầu riêng", en: "Durian" },
  fruit: { vi: "Cây ăn trái", en: "Fruit" },
  pineapple: { vi: "Khóm (dứa)", en: "Pineapple" },
  shrimp: { vi: "Tôm", en: "Shrimp" },
  pangasius: { vi: "Cá tra", en: "Pangasius" },
  none: { vi: "Không", en: "None" },
  smoke_fire: { vi: "Khói / cháy", en: "Smoke / fire" },
  flooding: { vi: "Ngập nước", en: "Flooding" },
  traffic_violation: { vi: "Vi phạm giao thông", en: "Traffic violation" },
  hygiene_violation: { vi: "Vi phạm vệ sinh", en: "Hygiene violation" },
  intrusion: { vi: "Xâm nhập", en: "Intrusion" },
  video_loss: { vi: "Mất tín hiệu video", en: "Video loss" },
};

export const FIELD_NAMES = {
  temp_c: { vi: "Nhiệt độ nước", en: "Water temperature" },
  ph: { vi: "pH", en: "pH" },
  do_mg_l: { vi: "Oxy hòa tan", en: "Dissolved oxygen" },
  ec_us_cm: { vi: "Độ dẫn điện", en: "Conductivity" },
  salinity_ppt: { vi: "Độ mặn", en: "Salinity" },
  turbidity_ntu: { vi: "Độ đục", en: "Turbidity" },
  tss_mg_l: { vi: "Chất rắn lơ lửng", en: "Suspended solids" },
  nh4_mg_l: { vi: "Amoni (NH₄⁺-N)", en: "Ammonium (NH₄⁺-N)" },
  battery_v: { vi: "Điện áp pin", en: "Battery voltage" },
  rssi_dbm: { vi: "Cường độ sóng", en: "Signal strength" },
  water_level_cm: { vi: "Mực nước", en: "Water level" },
  bph_count: { vi: "Rầy nâu (lượt đếm)", en: "Brown planthopper (interval)" },
  wbph_count: { vi: "Rầy lưng trắng (lượt đếm)", en: "White-backed planthopper (interval)" },
  glh_count: { vi: "Rầy xanh (lượt đếm)", en: "Green leafhopper (interval)" },
  leaffolder_count: { vi: "Sâu cuốn lá (lượt đếm)", en: "Leaf-folder moth (interval)" },
  stemborer_count: { vi: "Sâu đục thân (lượt đếm)", en: "Stem borer (interval)" },
  bph_night: { vi: "Rầy nâu (cả đêm)", en: "Brown planthopper (night)" },
  wbph_night: { vi: "Rầy lưng trắng (cả đêm)", en: "White-backed planthopper (night)" },
  glh_night: { vi: "Rầy xanh (cả đêm)", en: "Green leafhopper (night)" },
  leaffolder_night: { vi: "Sâu cuốn lá (cả đêm)", en: "Leaf-folder moth (night)" },
  stemborer_night: { vi: "Sâu đục thân (cả đêm)", en: "Stem borer (night)" },
  interval_s: { vi: "Khoảng đếm", en: "Counting interval" },
  lamp_on: { vi: "Đèn bẫy", en: "Trap lamp" },
  air_temp_c: { vi: "Nhiệt độ không khí", en: "Air temperature" },
  humidity_pct: { vi: "Độ ẩm", en: "Humidity" },
  video_ok: { vi: "Tín hiệu video", en: "Video signal" },
  fps: { vi: "Khung hình/giây", en: "Frames per second" },
  uptime_s: { vi: "Thời gian chạy", en: "Uptime" },
};

let current = "vi";

export function getLang() {
  return current;
}

export function setLang(lang) {
  current = LANGS.includes(lang) ? lang : "vi";
}

/** The text of `key` in the current language, `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const entry = STRINGS[key];
  const text = entry ? entry[current] ?? entry.vi : key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** A kind, site, crop or event class in the current language (its own name if unknown). */
export function nameOf(value) {
  const entry = NAMES[value];
  return entry ? entry[current] : String(value ?? "");
}

/** A telemetry field's name in the current language. */
export function fieldName(field) {
  const entry = FIELD_NAMES[field];
  return entry ? entry[current] : field;
}

/** A severity label ("none", "info", "warning", "critical") in words. */
export function severityName(label) {
  return label && label !== "none" ? t(`sev_${label}`) : t("no_alert");
}

const formats = new Map();
function parts(ms) {
  if (!formats.has("parts")) {
    const options = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    formats.set("parts", new Intl.DateTimeFormat("en-GB", { timeZone: TIME_ZONE, ...options }));
  }
  const out = {};
  for (const p of formats.get("parts").formatToParts(new Date(ms))) out[p.type] = p.value;
  return out;
}

/**
 * Epoch ms as local (UTC+7) time, day first as both languages write it: "full" 05/12/2026 13:32:05,
 * "short" 05/12 13:32, "axis" 05/12 13h.
 */
export function formatTime(ms, kind = "short") {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  const p = parts(ms);
  if (kind === "full") return `${p.day}/${p.month}/${p.year} ${p.hour}:${p.minute}:${p.second}`;
  if (kind === "axis") return `${p.day}/${p.month} ${p.hour}h`;
  return `${p.day}/${p.month} ${p.hour}:${p.minute}`;
}

/** A number for people: at most 3 significant decimals, locale separators. */
export function formatNumber(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return new Intl.NumberFormat(current === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: digits }).format(value);
}
