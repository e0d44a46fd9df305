"""The seed provinces and districts of the fleet, with the facts the simulators and dashboards need.

Coordinates are approximate district centres. ``km_from_sea`` is the distance up the main
estuary branch from the river mouth (drives salinity intrusion); ``coast`` says which sea
drives the tide there: the East Sea (irregular semi-diurnal, 3.5–4.2 m spring range) or the
Gulf of Thailand on the west coast (mostly diurnal, ~1 m) — domain reference §1 and §6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Coast = Literal["east", "west"]


@dataclass(frozen=True, slots=True)
class District:
    slug: str
    name: str
    lat: float
    lon: float
    km_from_sea: float
    coast: Coast
    crops: tuple[str, ...]
    """Crops or species farmed there, most common first (rice, durian, fruit, shrimp, pangasius)."""


@dataclass(frozen=True, slots=True)
class Province:
    slug: str
    name: str
    districts: tuple[District, ...]


def _d(slug: str, name: str, lat: float, lon: float, km: float, coast: Coast, *crops: str) -> District:
    return District(slug, name, lat, lon, km, coast, crops)


PROVINCES: Final[tuple[Province, ...]] = (
    Province(
        "hau_giang",
        "Hậu Giang",
        (
            _d("vi_thanh", "Vị Thanh", 9.784, 105.470, 60, "west", "rice", "pineapple"),
            _d("long_my", "Long Mỹ", 9.680, 105.570, 55, "west", "rice", "shrimp"),
            _d("vi_thuy", "Vị Thủy", 9.800, 105.560, 70, "west", "rice", "fruit"),
            _d("phung_hiep", "Phụng Hiệp", 9.800, 105.820, 75, "east", "rice", "pangasius"),
            _d("chau_thanh_a", "Châu Thành A", 9.930, 105.640, 90, "east", "rice", "fruit"),
        ),
    ),
    Province(
        "tien_giang",
        "Tiền Giang",
        (
            _d("go_cong_dong", "Gò Công Đông", 10.350, 106.720, 5, "east", "shrimp", "rice"),
            _d("go_cong_tay", "Gò Công Tây", 10.330, 106.600, 20, "east", "rice", "fruit"),
            _d("cho_gao", "Chợ Gạo", 10.350, 106.460, 35, "east", "fruit", "rice"),
            _d("chau_thanh_tg", "Châu Thành", 10.380, 106.280, 50, "east", "durian", "fruit"),
            _d("cai_be", "Cái Bè", 10.340, 106.030, 80, "east", "durian", "pangasius"),
        ),
    ),
    Province(
        "long_an",
        "Long An",
        (
            _d("can_giuoc", "Cần Giuộc", 10.600, 106.670, 30, "east", "rice", "shrimp"),
            _d("can_duoc", "Cần Đước", 10.510, 106.600, 25, "east", "rice", "shrimp"),
            _d("tan_tru", "Tân Trụ", 10.520, 106.510, 55, "east", "rice", "fruit"),
            _d("ben_luc", "Bến Lức", 10.640, 106.490, 70, "east", "rice", "fruit"),
            _d("thanh_hoa", "Thạnh Hóa", 10.660, 106.180, 100, "east", "rice", "pineapple"),
        ),
    ),
    Province(
        "dong_thap",
        "Đồng Tháp",
        (
            _d("lai_vung", "Lai Vung", 10.250, 105.650, 110, "east", "fruit", "rice"),
            _d("chau_thanh_dt", "Châu Thành", 10.220, 105.810, 120, "east", "pangasius", "rice"),
            _d("cao_lanh", "Cao Lãnh", 10.460, 105.630, 140, "east", "pangasius", "rice"),
            _d("thap_muoi", "Tháp Mười", 10.550, 105.830, 150, "east", "rice"),
            _d("tam_nong", "Tam Nông", 10.720, 105.520, 180, "east", "rice"),
        ),
    ),
    Province(
        "soc_trang",
        "Sóc Trăng",
        (
            _d("tran_de", "Trần Đề", 9.520, 106.200, 5, "east", "shrimp", "rice"),
            _d("long_phu", "Long Phú", 9.610, 106.130, 20, "east", "rice", "shrimp"),
            _d("cu_lao_dung", "Cù Lao Dung", 9.640, 106.200, 15, "east", "fruit", "rice"),
            _d("my_xuyen", "Mỹ Xuyên", 9.550, 105.990, 30, "east", "shrimp", "rice"),
            _d("ke_sach", "Kế Sách", 9.770, 105.980, 50, "east", "fruit", "rice"),
        ),
    ),
    Province(
        "ca_mau",
        "Cà Mau",
        (
            _d("ngoc_hien", "Ngọc Hiển", 8.680, 104.970, 5, "east", "shrimp"),
            _d("nam_can", "Năm Căn", 8.760, 104.990, 15, "east", "shrimp"),
            _d("dam_doi", "Đầm Dơi", 8.990, 105.200, 20, "east", "shrimp", "rice"),
            _d("tran_van_thoi", "Trần Văn Thời", 9.080, 104.970, 15, "west", "shrimp", "rice"),
            _d("u_minh", "U Minh", 9.400, 104.970, 20, "west", "rice", "shrimp"),
        ),
    ),
    Province(
        "ben_tre",
        "Bến Tre",
        (
            _d("ba_tri", "Ba Tri", 10.040, 106.600, 10, "east", "shrimp", "rice"),
            _d("binh_dai", "Bình Đại", 10.190, 106.690, 10, "east", "shrimp", "fruit"),
            _d("thanh_phu", "Thạnh Phú", 9.950, 106.550, 12, "east", "shrimp", "rice"),
            _d("giong_trom", "Giồng Trôm", 10.150, 106.500, 30, "east", "fruit", "rice"),
            _d("mo_cay_nam", "Mỏ Cày Nam", 10.100, 106.330, 45, "east", "durian", "fruit"),
        ),
    ),
)

PROVINCE_BY_SLUG: Final = {p.slug: p for p in PROVINCES}
